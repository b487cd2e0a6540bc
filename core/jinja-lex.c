/* Jinja lexer: template source -> tokens, with HF's environment settings
 * (trim_blocks, lstrip_blocks, keep_trailing_newline=False) and the
 * {%- -%} / {%+ +%} markers applied here, as jinja2's lexer does. */
#include "jinja-impl.h"

#include <zlight/status.h>

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena: the AST and tokens live until the template is freed --------- */

struct jj_chunk {
    struct jj_chunk *next;
    size_t used, size;
    max_align_t data[];
};

struct jj_arena {
    struct jj_chunk *head;
};

struct jj_arena *jj_arena_new(void) { return calloc(1, sizeof(struct jj_arena)); }

void jj_arena_free(struct jj_arena *a)
{
    if (!a)
        return;
    for (struct jj_chunk *c = a->head, *nx; c; c = nx) {
        nx = c->next;
        free(c);
    }
    free(a);
}

void *jj_alloc(struct jj_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    struct jj_chunk *c = a->head;
    if (!c || c->size - c->used < n) {
        size_t sz = n > 65536 ? n : 65536;
        c = malloc(sizeof(*c) + sz);
        if (!c)
            return NULL;
        c->size = sz;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

char *jj_strndup(struct jj_arena *a, const char *s, size_t n)
{
    char *p = jj_alloc(a, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

/* ---- lexer state ---------------------------------------------------------- */

struct lexer {
    struct jj_arena *a;
    const char *s;           /* normalized source */
    size_t n, pos;
    size_t lc_off;           /* line/column are advanced lazily to lc_off */
    int line, col;
    struct jj_token *v;
    size_t nv, cap;
};

static void lc_at(struct lexer *L, size_t off, int *line, int *col)
{
    /* Offsets only grow during a lex, except for errors inside a tag. */
    if (off < L->lc_off) {
        L->lc_off = 0;
        L->line = L->col = 1;
    }
    for (; L->lc_off < off; L->lc_off++) {
        unsigned char ch = (unsigned char)L->s[L->lc_off];
        if (ch == '\n') {
            L->line++;
            L->col = 1;
        } else if ((ch & 0xC0) != 0x80) {
            L->col++;
        }
    }
    *line = L->line;
    *col = L->col;
}

static int lex_error(struct lexer *L, size_t off, const char *what)
{
    int line, col;
    lc_at(L, off, &line, &col);
    return zl_error(ZL_EINVAL, "template syntax error at line %d, column %d: %s", line, col, what);
}

static struct jj_token *push(struct lexer *L, enum jj_tok kind, size_t off)
{
    if (L->nv == L->cap) {
        size_t nc = L->cap ? 2 * L->cap : 256;
        struct jj_token *nv = realloc(L->v, nc * sizeof(*nv));
        if (!nv)
            return NULL;
        L->v = nv;
        L->cap = nc;
    }
    struct jj_token *t = &L->v[L->nv++];
    memset(t, 0, sizeof(*t));
    t->kind = kind;
    lc_at(L, off, &t->line, &t->col);
    return t;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* Decodes a quoted literal starting at L->pos (on the quote). */
static int lex_string(struct lexer *L)
{
    size_t start = L->pos;
    char q = L->s[L->pos++];
    char *out = jj_alloc(L->a, L->n - L->pos + 1); /* decoded is never longer */
    size_t o = 0;
    if (!out)
        return zl_error(ZL_ENOMEM, "template: out of memory");
    for (;;) {
        if (L->pos >= L->n)
            return lex_error(L, start, "unterminated string literal");
        char ch = L->s[L->pos++];
        if (ch == q)
            break;
        if (ch != '\\') {
            out[o++] = ch;
            continue;
        }
        if (L->pos >= L->n)
            return lex_error(L, start, "unterminated string literal");
        char e = L->s[L->pos++];
        int hex = 0;
        switch (e) {
        case 'n': out[o++] = '\n'; break;
        case 't': out[o++] = '\t'; break;
        case 'r': out[o++] = '\r'; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'v': out[o++] = '\v'; break;
        case 'a': out[o++] = '\a'; break;
        case '0': out[o++] = '\0'; break;
        case '\n': break; /* line continuation */
        case 'x': hex = 2; break;
        case 'u': hex = 4; break;
        case 'U': hex = 8; break;
        default:
            if (e == '\\' || e == '\'' || e == '"') {
                out[o++] = e;
            } else { /* Python keeps unknown escapes verbatim */
                out[o++] = '\\';
                out[o++] = e;
            }
        }
        if (hex) {
            uint32_t cp = 0; /* \U's 8 digits reach 0xffffffff */
            for (int i = 0; i < hex; i++) {
                if (L->pos >= L->n || !isxdigit((unsigned char)L->s[L->pos]))
                    return lex_error(L, L->pos, "bad escape in string literal");
                char h = L->s[L->pos++];
                cp = cp * 16 + (uint32_t)(isdigit((unsigned char)h) ? h - '0' : (tolower((unsigned char)h) - 'a' + 10));
            }
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                return lex_error(L, start, "bad code point in string literal");
            char enc[4];
            int k = jj_u8_encode((int32_t)cp, enc);
            /* "\xNN" (4 bytes) may encode to 2 bytes: still fits */
            memcpy(out + o, enc, (size_t)k);
            o += (size_t)k;
        }
    }
    struct jj_token *t = push(L, JT_STRING, start);
    if (!t)
        return zl_error(ZL_ENOMEM, "template: out of memory");
    t->text = out;
    out[o] = 0;
    t->len = o;
    return 0;
}

static int lex_number(struct lexer *L)
{
    size_t start = L->pos;
    char buf[64];
    size_t b = 0;
    bool is_float = false;
    while (L->pos < L->n) {
        char ch = L->s[L->pos];
        if (isdigit((unsigned char)ch)) {
            /* fall through to copy */
        } else if (ch == '_') {
            L->pos++;
            continue;
        } else if (ch == '.' && !is_float && L->pos + 1 < L->n && isdigit((unsigned char)L->s[L->pos + 1])) {
            is_float = true;
        } else if ((ch == 'e' || ch == 'E') && L->pos + 1 < L->n &&
                   (isdigit((unsigned char)L->s[L->pos + 1]) ||
                    ((L->s[L->pos + 1] == '-' || L->s[L->pos + 1] == '+') && L->pos + 2 < L->n &&
                     isdigit((unsigned char)L->s[L->pos + 2])))) {
            is_float = true;
            if (b < sizeof(buf) - 2)
                buf[b++] = ch;
            L->pos++;
            ch = L->s[L->pos];
        } else {
            break;
        }
        if (b >= sizeof(buf) - 1)
            return lex_error(L, start, "number literal too long");
        buf[b++] = ch;
        L->pos++;
    }
    buf[b] = 0;
    struct jj_token *t = push(L, is_float ? JT_FLOAT : JT_INT, start);
    if (!t)
        return zl_error(ZL_ENOMEM, "template: out of memory");
    errno = 0;
    if (is_float) {
        t->fval = strtod(buf, NULL);
    } else {
        t->ival = strtoll(buf, NULL, 10);
        if (errno == ERANGE)
            return lex_error(L, start, "integer literal out of range");
    }
    return 0;
}

static const char *const ops2[] = {"//", "**", "==", "!=", "<=", ">=", NULL};
static const char ops1[] = "+-*/%~<>=()[]{},.:|";

/* Lexes the inside of a {{ }} or {% %} tag up to and including its closer.
 * Sets *strip_after when the closer is "-}}"/"-%}", *keep when "+%}". */
static int lex_tag(struct lexer *L, size_t open, bool block, bool *strip_after, bool *keep)
{
    int depth = 0; /* brackets: "}}" inside a dict literal is not a closer */
    for (;;) {
        while (L->pos < L->n && is_ws(L->s[L->pos]))
            L->pos++;
        if (L->pos >= L->n)
            return lex_error(L, open, block ? "unclosed '{%'" : "unclosed '{{'");
        const char *p = L->s + L->pos;
        size_t left = L->n - L->pos;
        char close = block ? '%' : '}';
        if (depth == 0 || block) {
            int skip = (p[0] == '-' || p[0] == '+') ? 1 : 0;
            if (left >= (size_t)skip + 2 && p[skip] == close && p[skip + 1] == '}' &&
                !(skip && p[0] == '+' && !block)) {
                *strip_after = p[0] == '-';
                *keep = p[0] == '+';
                struct jj_token *t = push(L, block ? JT_BLOCK_END : JT_VAR_END, L->pos);
                if (!t)
                    return zl_error(ZL_ENOMEM, "template: out of memory");
                L->pos += (size_t)skip + 2;
                return 0;
            }
        }
        unsigned char ch = (unsigned char)p[0];
        if (isalpha(ch) || ch == '_') {
            size_t s0 = L->pos;
            while (L->pos < L->n && (isalnum((unsigned char)L->s[L->pos]) || L->s[L->pos] == '_'))
                L->pos++;
            struct jj_token *t = push(L, JT_NAME, s0);
            if (!t || !(t->text = jj_strndup(L->a, L->s + s0, L->pos - s0)))
                return zl_error(ZL_ENOMEM, "template: out of memory");
            t->len = L->pos - s0;
            continue;
        }
        if (isdigit(ch)) {
            int rc = lex_number(L);
            if (rc < 0)
                return rc;
            continue;
        }
        if (ch == '\'' || ch == '"') {
            int rc = lex_string(L);
            if (rc < 0)
                return rc;
            continue;
        }
        const char *op = NULL;
        for (int i = 0; ops2[i]; i++)
            if (left >= 2 && p[0] == ops2[i][0] && p[1] == ops2[i][1])
                op = ops2[i];
        char one[2] = {(char)ch, 0};
        if (!op && ch && strchr(ops1, ch))
            op = one;
        if (!op)
            return lex_error(L, L->pos, "unexpected character");
        if (ch == '(' || ch == '[' || ch == '{')
            depth++;
        else if ((ch == ')' || ch == ']' || ch == '}') && depth > 0)
            depth--;
        struct jj_token *t = push(L, JT_OP, L->pos);
        if (!t)
            return zl_error(ZL_ENOMEM, "template: out of memory");
        strcpy(t->op, op);
        L->pos += strlen(op);
    }
}

/* Emits the text between two tags, after the whitespace rules. */
static int emit_text(struct lexer *L, size_t from, size_t to, bool rstrip_all, bool lstrip_line)
{
    if (rstrip_all) {
        while (to > from && is_ws(L->s[to - 1]))
            to--;
    } else if (lstrip_line) {
        size_t k = to;
        while (k > from && (L->s[k - 1] == ' ' || L->s[k - 1] == '\t' || L->s[k - 1] == '\v' ||
                            L->s[k - 1] == '\f' || L->s[k - 1] == '\r'))
            k--;
        bool at_line_start = k > from ? L->s[k - 1] == '\n' : (from == 0 || L->s[from - 1] == '\n');
        if (at_line_start)
            to = k;
    }
    if (to == from)
        return 0;
    struct jj_token *t = push(L, JT_TEXT, from);
    if (!t)
        return zl_error(ZL_ENOMEM, "template: out of memory");
    t->text = (char *)L->s + from;
    t->len = to - from;
    return 0;
}

/* Matches "  word  [-]%}" at p (just inside a "{%" tag); returns the offset
 * after it with "-%}" and (when `trim`) trim_blocks applied, or 0. */
static size_t match_tag_word(const struct lexer *L, size_t p, const char *word, bool trim)
{
    size_t k = strlen(word);
    while (p < L->n && is_ws(L->s[p]))
        p++;
    if (L->n - p < k || strncmp(L->s + p, word, k) != 0)
        return 0;
    p += k;
    while (p < L->n && is_ws(L->s[p]))
        p++;
    bool minus = p < L->n && L->s[p] == '-';
    if (minus)
        p++;
    if (L->n - p < 2 || L->s[p] != '%' || L->s[p + 1] != '}')
        return 0;
    p += 2;
    if (minus)
        while (p < L->n && is_ws(L->s[p]))
            p++;
    else if (trim && p < L->n && L->s[p] == '\n')
        p++;
    return p;
}

/* {% raw %} ... {% endraw %}: *handled says whether one was consumed. */
static int lex_raw(struct lexer *L, size_t tag_start, bool *handled)
{
    *handled = false;
    size_t p = match_tag_word(L, L->pos, "raw", false) /* jinja2 keeps that newline */;
    if (!p)
        return 0;
    for (size_t q = p; q + 1 < L->n; q++) {
        if (L->s[q] != '{' || L->s[q + 1] != '%')
            continue;
        size_t r = q + 2;
        bool pre_minus = r < L->n && L->s[r] == '-';
        if (r < L->n && (L->s[r] == '-' || L->s[r] == '+'))
            r++;
        size_t end = match_tag_word(L, r, "endraw", true);
        if (!end)
            continue;
        int rc = emit_text(L, p, q, pre_minus, !pre_minus);
        if (rc < 0)
            return rc;
        L->pos = end;
        *handled = true;
        return 0;
    }
    return lex_error(L, tag_start, "missing {% endraw %}");
}

int jj_lex(struct jj_arena *a, const char *src, size_t n, struct jj_token **toks, size_t *ntoks)
{
    struct lexer L = {.a = a, .line = 1, .col = 1};
    /* jinja2 normalizes every newline to "\n" and drops one trailing one. */
    char *s = jj_alloc(a, n + 1);
    if (!s)
        return zl_error(ZL_ENOMEM, "template: out of memory");
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (src[i] == '\r') {
            s[m++] = '\n';
            if (i + 1 < n && src[i + 1] == '\n')
                i++;
        } else {
            s[m++] = src[i];
        }
    }
    if (m > 0 && s[m - 1] == '\n')
        m--;
    s[m] = 0;
    L.s = s;
    L.n = m;
    int rc = 0;
    while (L.pos < L.n && rc == 0) {
        size_t t0 = L.pos;
        const char *hit = NULL;
        for (size_t i = L.pos; i + 1 < L.n; i++) {
            if (L.s[i] == '{' && (L.s[i + 1] == '{' || L.s[i + 1] == '%' || L.s[i + 1] == '#')) {
                hit = L.s + i;
                break;
            }
        }
        if (!hit) {
            rc = emit_text(&L, t0, L.n, false, false);
            L.pos = L.n;
            break;
        }
        size_t tag = (size_t)(hit - L.s);
        char kind = hit[1];
        char mark = tag + 2 < L.n ? hit[2] : 0;
        bool minus = mark == '-';
        bool plus = mark == '+' && kind != '{';
        rc = emit_text(&L, t0, tag, minus, !minus && !plus && kind != '{');
        if (rc < 0)
            break;
        L.pos = tag + 2 + (minus || plus ? 1 : 0);
        bool strip_after = false, keep = false;
        if (kind == '#') {
            const char *end = NULL;
            for (size_t i = L.pos; i + 1 < L.n; i++)
                if (L.s[i] == '#' && L.s[i + 1] == '}') {
                    end = L.s + i;
                    break;
                }
            if (!end) {
                rc = lex_error(&L, tag, "unclosed comment");
                break;
            }
            size_t e = (size_t)(end - L.s);
            strip_after = e > L.pos && L.s[e - 1] == '-';
            keep = e > L.pos && L.s[e - 1] == '+';
            L.pos = e + 2;
        } else if (kind == '%') {
            bool raw = false;
            rc = lex_raw(&L, tag, &raw);
            if (rc < 0 || raw)
                continue;
            if (!push(&L, JT_BLOCK_BEGIN, tag)) {
                rc = zl_error(ZL_ENOMEM, "template: out of memory");
                break;
            }
            rc = lex_tag(&L, tag, true, &strip_after, &keep);
        } else {
            if (!push(&L, JT_VAR_BEGIN, tag)) {
                rc = zl_error(ZL_ENOMEM, "template: out of memory");
                break;
            }
            rc = lex_tag(&L, tag, false, &strip_after, &keep);
        }
        if (rc < 0)
            break;
        if (strip_after) {
            while (L.pos < L.n && is_ws(L.s[L.pos]))
                L.pos++;
        } else if (kind != '{' && !keep && L.pos < L.n && L.s[L.pos] == '\n') {
            L.pos++; /* trim_blocks */
        }
    }
    if (rc == 0 && !push(&L, JT_EOF, L.n))
        rc = zl_error(ZL_ENOMEM, "template: out of memory");
    if (rc < 0) {
        free(L.v);
        return rc;
    }
    *toks = L.v;
    *ntoks = L.nv;
    return 0;
}
