/* zlight-tokenize: text <-> token ids with a model's tokenizer.
 *
 *   echo "Hello" | zlight-tokenize --tokenizer models/llama3 --add-special
 *   echo "128000 9906" | zlight-tokenize --tokenizer models/llama3 --decode
 *   zlight-tokenize --tokenizer dir --chat msgs.json --add-generation-prompt --render
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlight/chat.h>
#include <zlight/tokenizer.h>

static void usage(FILE *f)
{
    fputs("usage: zlight-tokenize --tokenizer PATH [--add-special] [--decode] [--skip-special]\n"
          "         [--chat MESSAGES.json [--tools TOOLS.json] [--add-generation-prompt]\n"
          "          [--render] [--var name=json]...]\n"
          "PATH: a directory with tokenizer.json (+ tokenizer_config.json) or a .gguf file.\n"
          "Encodes stdin to space-separated ids; --decode reads ids and prints text;\n"
          "--chat renders the conversation with the chat template, then prints its ids\n"
          "(or, with --render, the text).\n",
          f);
}

static char *read_all(FILE *f, size_t *len)
{
    size_t cap = 65536, n = 0, r;
    char *p = malloc(cap);
    while (p && (r = fread(p + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n - 1 == 0) {
            char *q = realloc(p, cap * 2);
            if (!q) {
                free(p);
                return NULL;
            }
            p = q;
            cap *= 2;
        }
    }
    if (p)
        p[n] = 0;
    *len = n;
    return p;
}

static int print_ids(const int32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        printf(i ? " %d" : "%d", (int)ids[i]);
    putchar('\n');
    return 0;
}

static json_t *load_json(const char *path)
{
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    if (!j)
        fprintf(stderr, "zlight-tokenize: %s:%d:%d: %s\n", path, err.line, err.column, err.text);
    return j;
}

/* Renders --chat; returns malloc'd text or NULL after printing why. */
static char *render_chat(const struct zl_tokenizer *tok, const char *path, const char *msgs_path,
                         const char *tools_path, int add_gen, json_t *vars)
{
    struct zl_chat_template *ct = NULL;
    json_t *msgs = load_json(msgs_path), *tools = tools_path ? load_json(tools_path) : NULL;
    char *text = NULL;
    size_t pl = strlen(path);
    int rc;
    if (!msgs || (tools_path && !tools))
        goto out;
    if (pl >= 5 && !strcmp(path + pl - 5, ".gguf")) {
        const char *src = zl_tokenizer_chat_template(tok);
        if (!src) {
            fprintf(stderr, "zlight-tokenize: %s has no tokenizer.chat_template\n", path);
            goto out;
        }
        rc = zl_chat_template_compile(src, (size_t)-1, &ct);
        if (rc == 0)
            rc = zl_chat_template_set_special(ct, zl_tokenizer_bos_token(tok), zl_tokenizer_eos_token(tok));
    } else {
        rc = zl_chat_template_load_dir(path, NULL, &ct);
    }
    if (rc < 0) {
        fprintf(stderr, "zlight-tokenize: chat template: %s\n", zl_last_error());
        goto out;
    }
    struct zl_chat_params p;
    zl_chat_default_params(&p);
    p.messages = msgs;
    p.tools = tools;
    p.add_generation_prompt = add_gen;
    p.vars = vars;
    if (zl_chat_template_render(ct, &p, &text) < 0) {
        fprintf(stderr, "zlight-tokenize: chat template: %s\n", zl_last_error());
        text = NULL;
    }
out:
    zl_chat_template_free(ct);
    json_decref(msgs);
    json_decref(tools);
    return text;
}

int main(int argc, char **argv)
{
    const char *path = NULL, *chat = NULL, *tools = NULL;
    int add_special = 0, decode = 0, add_gen = 0, render = 0, skip_special = 0;
    json_t *vars = json_object();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--tokenizer") && more)
            path = argv[++i];
        else if (!strcmp(a, "--add-special"))
            add_special = 1;
        else if (!strcmp(a, "--decode"))
            decode = 1;
        else if (!strcmp(a, "--skip-special"))
            skip_special = 1;
        else if (!strcmp(a, "--chat") && more)
            chat = argv[++i];
        else if (!strcmp(a, "--tools") && more)
            tools = argv[++i];
        else if (!strcmp(a, "--add-generation-prompt"))
            add_gen = 1;
        else if (!strcmp(a, "--render"))
            render = 1;
        else if (!strcmp(a, "--var") && more) {
            const char *kv = argv[++i], *eq = strchr(kv, '=');
            json_error_t err;
            json_t *v = eq ? json_loads(eq + 1, JSON_DECODE_ANY, &err) : NULL;
            if (!v) {
                fprintf(stderr, "zlight-tokenize: --var %s: expected name=json\n", kv);
                json_decref(vars);
                return 2;
            }
            char *name = strndup(kv, (size_t)(eq - kv));
            json_object_set_new(vars, name, v);
            free(name);
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            json_decref(vars);
            return 0;
        } else {
            fprintf(stderr, "zlight-tokenize: unknown or incomplete option %s\n", a);
            usage(stderr);
            json_decref(vars);
            return 2;
        }
    }
    struct zl_tokenizer *tok;
    if (!path) {
        usage(stderr);
        json_decref(vars);
        return 2;
    }
    if (zl_tokenizer_load(path, &tok) < 0) {
        fprintf(stderr, "zlight-tokenize: %s\n", zl_last_error());
        json_decref(vars);
        return 1;
    }
    int status = 1;
    char *in = NULL;
    size_t len = 0;
    if (chat) {
        in = render_chat(tok, path, chat, tools, add_gen, vars);
        len = in ? strlen(in) : 0;
        if (in && render) {
            fputs(in, stdout);
            status = 0;
            goto done;
        }
    } else {
        in = read_all(stdin, &len);
    }
    if (!in)
        goto done;
    if (decode) {
        size_t n = 0, cap = 1024;
        int32_t *ids = malloc(cap * sizeof(*ids));
        char *p = in, *end;
        for (;;) {
            long v = strtol(p, &end, 10);
            if (end == p)
                break;
            if (n == cap) {
                int32_t *q = realloc(ids, (cap *= 2) * sizeof(*ids));
                if (!q)
                    break;
                ids = q;
            }
            ids[n++] = (int32_t)v;
            p = end;
        }
        while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
            p++;
        if (*p) {
            fprintf(stderr, "zlight-tokenize: --decode: not an id: %.20s\n", p);
        } else {
            char *text;
            size_t tl;
            if (zl_tokenizer_decode(tok, ids, n, skip_special ? ZL_DETOK_SKIP_SPECIAL : 0, &text, &tl) == 0) {
                fwrite(text, 1, tl, stdout);
                free(text);
                status = 0;
            }
        }
        free(ids);
    } else {
        int32_t *ids;
        size_t n;
        if (zl_tokenizer_encode(tok, in, len, add_special ? ZL_TOK_ADD_SPECIAL : 0, &ids, &n) == 0) {
            print_ids(ids, n);
            free(ids);
            status = 0;
        }
    }
    if (status)
        fprintf(stderr, "zlight-tokenize: %s\n", zl_last_error());
done:
    free(in);
    json_decref(vars);
    zl_tokenizer_free(tok);
    return status;
}
