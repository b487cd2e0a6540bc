/* libFuzzer target of guided decoding: the input is a JSON Schema, a NUL
 * byte, then text.  The schema is compiled (errors are fine); the text is
 * fed a byte at a time while the guide takes it.  Checked on the way:
 * each step's mask over a small vocabulary says exactly which tokens a
 * guide fed the same text takes (a fresh guide, replayed), and where the
 * guide says the document may end, jansson parses it.  Must never crash,
 * hang or leak.  Build and run: tests/fuzz/run-guide.sh */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlight/guide.h>
#include <zlight/tokenizer.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const k_pieces[] = {
    "{", "}", "[", "]", "\"", ":", ",", " ", "\n", "-", "+", ".", "0", "1", "9", "e", "E", "a",
    "b", "f", "l", "n", "r", "s", "t", "u", "x", "\\", "/", "\\u", "d8", "00", "{\"", "\":",
    "\",", "true", "false", "null", "\xc3\xa9", "\xe2\x80", "\x94", "\xf0\x9f\x99\x82", "  ",
    "\"a\"", "1.5e-3", "},", "]}",
};
#define N_PIECES (sizeof k_pieces / sizeof *k_pieces)

static struct zl_tokenizer *tok;
static struct zl_guide_vocab *vocab;

/* GPT-2's byte -> code point alphabet (a ByteLevel vocabulary spells raw
 * bytes, partial UTF-8 included, through it). */
static unsigned gpt2_cp(unsigned b)
{
    unsigned moved = 0;
    for (unsigned x = 0; x < 256; x++) {
        int keep = (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174;
        if (x == b)
            return keep ? x : 256 + moved;
        moved += !keep;
    }
    return 0;
}

static void setup(void)
{
    json_t *v = json_object();
    for (size_t i = 0; i < N_PIECES; i++) {
        char s[64];
        size_t n = 0;
        for (const unsigned char *p = (const unsigned char *)k_pieces[i]; *p; p++) {
            unsigned cp = gpt2_cp(*p);
            if (cp < 0x80) {
                s[n++] = (char)cp;
            } else {
                s[n++] = (char)(0xC0 | cp >> 6);
                s[n++] = (char)(0x80 | (cp & 0x3F));
            }
        }
        s[n] = 0;
        json_object_set_new(v, s, json_integer((json_int_t)i));
    }
    json_t *doc = json_pack("{s:{s:s,s:[],s:o},s:{s:s}}", "model", "type", "BPE", "merges",
                            "vocab", v, "decoder", "type", "ByteLevel");
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (zl_tokenizer_load_json(text, strlen(text), &tok) < 0 ||
        zl_guide_vocab_create(tok, (int32_t)N_PIECES, &vocab) < 0)
        abort();
    free(text);
}

static int takes(const struct zl_json_schema *s, const uint8_t *text, size_t n, int32_t t)
{
    struct zl_guide *g;
    if (zl_guide_create(s, vocab, &g) < 0)
        abort();
    int ok = zl_guide_feed(g, (const char *)text, n) == 0 && zl_guide_accept(g, t) == 0;
    zl_guide_free(g);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!vocab)
        setup();
    const uint8_t *nul = memchr(data, 0, size);
    size_t slen = nul ? (size_t)(nul - data) : size;
    const uint8_t *text = nul ? nul + 1 : data + size;
    size_t tlen = nul ? size - slen - 1 : 0;
    struct zl_json_schema *s;
    if (zl_json_schema_compile((const char *)data, slen, &s) < 0)
        return 0;
    struct zl_guide *g;
    if (zl_guide_create(s, vocab, &g) < 0)
        abort();
    uint32_t mask[(N_PIECES + 31) / 32];
    size_t fed = 0;
    for (; fed <= tlen; fed++) {
        if (fed < 48) {         /* the exactness check replays: keep it to short prefixes */
            if (zl_guide_mask(g, mask) < 0)
                abort();
            for (int32_t t = 0; t < (int32_t)N_PIECES; t++)
                if (((mask[t / 32] >> (t % 32)) & 1) != (uint32_t)takes(s, text, fed, t))
                    abort();
        }
        if (zl_guide_can_end(g)) {
            json_error_t err;
            json_t *j = json_loadb((const char *)text, fed, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
            /* jansson refuses integers past 64 bits and reals past double;
             * JSON itself does not */
            if (!j && !strstr(err.text, "too big") && !strstr(err.text, "overflow"))
                abort();
            json_decref(j);
        }
        if (fed == tlen || zl_guide_feed(g, (const char *)text + fed, 1) < 0)
            break;
    }
    zl_guide_free(g);
    zl_json_schema_free(s);
    return 0;
}
