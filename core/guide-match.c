/* The guide's automaton: one byte at a time, a stack of open containers
 * (objects, arrays) over the scalar being read.  A number or an enum value
 * that a longer one extends ends only when a byte that cannot extend it
 * comes; that byte is then read again by the container.  Fields that
 * cannot change what may follow stay zero, so equal futures have equal
 * bytes (guide-mask.c caches masks by them). */
#include <string.h>

#include "guide-impl.h"

enum gd_mode { O_FIRST = 1, O_KEY, O_COLON, O_VALUE, O_NEXT, A_FIRST, A_VALUE, A_NEXT };
enum gd_lex_kind { LX_NONE, LX_STRING, LX_NUMBER, LX_LIT };
/* String phases: a \u escape of a high surrogate (\uD800-\uDBFF) must be
 * followed by one of a low surrogate (\uDC00-\uDFFF), and a low one alone
 * is refused: strict parsers refuse unpaired surrogates. */
enum { S_CHAR, S_ESC, S_HEX, S_HEX_D, S_HEX_HI, S_LOW_BS, S_LOW_U, S_LOW_D, S_LOW_2 };
enum { N_SIGN, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };
#define N_TERMINAL(p) ((p) == N_ZERO || (p) == N_INT || (p) == N_FRAC || (p) == N_EXP)

static const char *const k_lits[] = {"true", "false", "null"};
static const size_t k_lit_len[] = {4, 5, 4};

static void lit_at(const struct zl_json_schema *sc, const struct gd_lex *x, int i,
                   const char **t, size_t *n)
{
    if (x->node < 0) {
        *t = k_lits[i];
        *n = k_lit_len[i];
    } else {
        *t = sc->nodes[x->node].lits[i];
        *n = sc->nodes[x->node].lit_len[i];
    }
}

/* An enum / literal value among the candidates is complete: 1 when one is,
 * 2 when one is and none is longer (it ends now). */
static int lit_complete(const struct zl_json_schema *sc, const struct gd_lex *x)
{
    int done = 0, longer = 0;
    for (uint64_t m = x->cand; m; m &= m - 1) {
        const char *t;
        size_t n;
        lit_at(sc, x, __builtin_ctzll(m), &t, &n);
        done |= n == x->pos;
        longer |= n > x->pos;
    }
    return done ? (longer ? 1 : 2) : 0;
}

void gd_start(const struct zl_json_schema *sc, struct gd_state *s)
{
    (void)sc;
    memset(s, 0, sizeof(*s));
    s->root = GD_ROOT_VALUE;
}

size_t gd_state_size(const struct gd_state *s)
{
    return offsetof(struct gd_state, f) + sizeof(s->f[0]) * s->depth;
}

/* A tagged object's first value (x, the literal just read) picks its
 * branch: the frame becomes that object with the tag already seen. */
static void pick_branch(const struct zl_json_schema *sc, struct gd_frame *f,
                        const struct gd_lex *x)
{
    const struct gd_node *t = &sc->nodes[f->node], *tag = &sc->nodes[x->node];
    int32_t lit = 0;
    for (uint64_t m = x->cand; m; m &= m - 1)
        if (tag->lit_len[__builtin_ctzll(m)] == x->pos)
            lit = __builtin_ctzll(m);
    int32_t b = gd_resolve(sc, t->alts[t->tag_alt[lit]]);
    const struct gd_node *o = &sc->nodes[b];
    f->node = b;
    f->seen = 0;
    for (int32_t i = 0; i < o->n_props; i++)
        if (o->props[i].len == t->props[0].len &&
            !memcmp(o->props[i].name, t->props[0].name, t->props[0].len))
            f->seen = 1ull << i;
    f->prop = 0;
    f->mode = O_NEXT;
}

/* The value that the innermost container (or the root) was waiting for
 * has ended. */
static void value_done(const struct zl_json_schema *sc, struct gd_state *s)
{
    struct gd_lex x = s->lex;
    s->lex = (struct gd_lex){0};
    if (!s->depth) {
        s->root = GD_ROOT_DONE;
        return;
    }
    struct gd_frame *f = &s->f[s->depth - 1];
    if (f->mode == O_VALUE && sc->nodes[f->node].kind == GD_TAGGED) {
        pick_branch(sc, f, &x);
        return;
    }
    if (f->mode == O_VALUE) {
        if (f->prop >= 0)
            f->seen |= 1ull << f->prop;
        f->prop = 0;
        f->mode = O_NEXT;
    } else {
        const struct gd_node *a = &sc->nodes[f->node];
        if (a->min > 0 || a->max >= 0)
            f->count++;     /* counted only where a bound reads it */
        f->mode = A_NEXT;
    }
}

static int push(struct gd_state *s, int32_t n, uint8_t mode)
{
    if (s->depth == ZL_GUIDE_MAX_DEPTH)
        return 0;
    s->f[s->depth++] = (struct gd_frame){.node = n, .mode = mode};
    return 1;
}

static int lit_step(const struct zl_json_schema *sc, struct gd_state *s, uint8_t c);

/* Byte c begins a value of node n. */
static int value_start(const struct zl_json_schema *sc, struct gd_state *s, int32_t n, uint8_t c)
{
    n = gd_resolve(sc, n);
    const struct gd_node *d = &sc->nodes[n];
    struct gd_lex *x = &s->lex;
    int number = c == '-' || (c >= '0' && c <= '9');
    switch (d->kind) {
    case GD_UNION:
        return d->pick[c] >= 0 && value_start(sc, s, d->alts[d->pick[c]], c);
    case GD_ANY:
        if (c == '{')
            return push(s, GD_NODE_ANY_OBJECT, O_FIRST);
        if (c == '[')
            return push(s, GD_NODE_ANY_ARRAY, A_FIRST);
        if (c == 't' || c == 'f' || c == 'n') {
            *x = (struct gd_lex){.kind = LX_LIT, .node = -1, .cand = 7};
            return lit_step(sc, s, c);
        }
        break;
    case GD_OBJECT:
    case GD_TAGGED:
        return c == '{' && push(s, n, O_FIRST);
    case GD_ARRAY:
        return c == '[' && push(s, n, A_FIRST);
    case GD_BOOLEAN:
    case GD_NULL:
        *x = (struct gd_lex){.kind = LX_LIT, .node = -1, .cand = d->kind == GD_NULL ? 4 : 3};
        return lit_step(sc, s, c);
    case GD_ENUM:
        *x = (struct gd_lex){.kind = LX_LIT, .node = n,
                             .cand = d->n_lits == 64 ? ~0ull : (1ull << d->n_lits) - 1};
        return lit_step(sc, s, c);
    case GD_STRING:
    case GD_NUMBER:
    case GD_INTEGER:
        break;
    }
    if (c == '"' && (d->kind == GD_ANY || d->kind == GD_STRING)) {
        *x = (struct gd_lex){.kind = LX_STRING, .node = d->kind == GD_STRING ? n : -1};
        return 1;
    }
    if (number && d->kind != GD_STRING) {
        *x = (struct gd_lex){.kind = LX_NUMBER, .node = d->kind == GD_INTEGER ? n : -1,
                             .phase = c == '-' ? N_SIGN : c == '0' ? N_ZERO : N_INT};
        return 1;
    }
    return 0;
}

static int is_ws(uint8_t c)
{
    return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

/* Byte c where no scalar is being read. */
static int structural(const struct zl_json_schema *sc, struct gd_state *s, uint8_t c)
{
    if (is_ws(c)) {
        if (s->root == GD_ROOT_DONE || s->ws >= ZL_GUIDE_MAX_WS)
            return 0;
        s->ws++;
        return 1;
    }
    s->ws = 0;
    if (!s->depth)
        return s->root == GD_ROOT_VALUE && value_start(sc, s, sc->root, c);
    struct gd_frame *f = &s->f[s->depth - 1];
    const struct gd_node *d = &sc->nodes[f->node];
    switch (f->mode) {
    case O_FIRST:
        if (c == '}' && !d->required) {
            s->depth--;
            value_done(sc, s);
            return 1;
        }
        /* fall through */
    case O_KEY:
        if (c != '"')
            return 0;
        /* with extra keys allowed the seen props stay candidates, so that a
         * repeated key is caught at its end; without, they go now */
        s->lex = (struct gd_lex){.kind = LX_STRING, .is_key = 1, .node = -1,
                                 .cand = (d->n_props == 64 ? ~0ull : (1ull << d->n_props) - 1)};
        if (d->extra < 0)
            s->lex.cand &= ~f->seen;
        return s->lex.cand || d->extra >= 0;
    case O_COLON:
        if (c != ':')
            return 0;
        f->mode = O_VALUE;
        return 1;
    case O_VALUE:
        return value_start(sc, s, f->prop >= 0 ? d->props[f->prop].node : d->extra, c);
    case O_NEXT: {
        uint64_t all = d->n_props == 64 ? ~0ull : (1ull << d->n_props) - 1;
        if (c == ',' && ((all & ~f->seen) || d->extra >= 0)) {
            f->mode = O_KEY;
            return 1;
        }
        if (c == '}' && !(d->required & ~f->seen)) {
            s->depth--;
            value_done(sc, s);
            return 1;
        }
        return 0;
    }
    case A_FIRST:
        if (c == ']' && d->min <= 0) {
            s->depth--;
            value_done(sc, s);
            return 1;
        }
        if (d->max == 0)
            return 0;
        f->mode = A_VALUE;
        return value_start(sc, s, d->items, c);
    case A_VALUE:
        return value_start(sc, s, d->items, c);
    case A_NEXT:
        if (c == ',' && (d->max < 0 || f->count < d->max)) {
            f->mode = A_VALUE;
            return 1;
        }
        if (c == ']' && f->count >= d->min) {
            s->depth--;
            value_done(sc, s);
            return 1;
        }
        return 0;
    }
    return 0;
}

static int lit_step(const struct zl_json_schema *sc, struct gd_state *s, uint8_t c)
{
    struct gd_lex *x = &s->lex;
    uint64_t keep = 0;
    for (uint64_t m = x->cand; m; m &= m - 1) {
        const char *t;
        size_t n;
        lit_at(sc, x, __builtin_ctzll(m), &t, &n);
        if (x->pos < n && (uint8_t)t[x->pos] == c)
            keep |= m & -m;
    }
    if (!keep) {
        if (!lit_complete(sc, x))
            return 0;
        value_done(sc, s);      /* "1" of enum [1, 10] ended by the byte after it */
        return structural(sc, s, c);
    }
    x->cand = keep;
    x->pos++;
    if (lit_complete(sc, x) == 2)
        value_done(sc, s);
    return 1;
}

static int number_step(const struct zl_json_schema *sc, struct gd_state *s, uint8_t c)
{
    struct gd_lex *x = &s->lex;
    int digit = c >= '0' && c <= '9', integer = x->node >= 0;
    uint8_t p = x->phase, next = 255;
    switch (p) {
    case N_SIGN: next = c == '0' ? N_ZERO : digit ? N_INT : 255; break;
    case N_ZERO: next = c == '.' ? N_DOT : (c == 'e' || c == 'E') ? N_E : 255; break;
    case N_INT: next = digit ? N_INT : c == '.' ? N_DOT : (c == 'e' || c == 'E') ? N_E : 255; break;
    case N_DOT: next = digit ? N_FRAC : 255; break;
    case N_FRAC: next = digit ? N_FRAC : (c == 'e' || c == 'E') ? N_E : 255; break;
    case N_E: next = digit ? N_EXP : (c == '+' || c == '-') ? N_ESIGN : 255; break;
    case N_ESIGN: case N_EXP: next = digit ? N_EXP : 255; break;
    }
    if (integer && (next == N_DOT || next == N_E))
        next = 255;
    if (next != 255) {
        x->phase = next;
        return 1;
    }
    if (!N_TERMINAL(p))
        return 0;
    value_done(sc, s);
    return structural(sc, s, c);
}

/* A key's candidate props narrowed by its next byte (escapes match none);
 * 0 when no key the object takes begins so. */
static int key_byte(const struct gd_node *d, struct gd_lex *x, uint8_t c, int plain)
{
    uint64_t keep = 0;
    for (uint64_t m = x->cand; m; m &= m - 1) {
        const struct gd_prop *p = &d->props[__builtin_ctzll(m)];
        if (plain && x->pos < p->len && (uint8_t)p->name[x->pos] == c)
            keep |= m & -m;
    }
    x->cand = keep;
    x->pos = keep ? x->pos + 1 : 0;
    return keep || d->extra >= 0;
}

static int key_end(const struct zl_json_schema *sc, struct gd_state *s)
{
    struct gd_frame *f = &s->f[s->depth - 1];
    const struct gd_node *d = &sc->nodes[f->node];
    int32_t hit = -1;
    for (uint64_t m = s->lex.cand; m; m &= m - 1)
        if (d->props[__builtin_ctzll(m)].len == s->lex.pos)
            hit = __builtin_ctzll(m);
    s->lex = (struct gd_lex){0};
    if (hit >= 0 && (f->seen >> hit & 1))
        return 0;               /* a key at most once */
    if (hit < 0 && d->extra < 0)
        return 0;
    f->prop = (int8_t)hit;
    f->mode = O_COLON;
    return 1;
}

static int string_step(const struct zl_json_schema *sc, struct gd_state *s, uint8_t c)
{
    struct gd_lex *x = &s->lex;
    const struct gd_node *d = x->node >= 0 ? &sc->nodes[x->node] : NULL;
    const struct gd_node *obj = x->is_key ? &sc->nodes[s->f[s->depth - 1].node] : NULL;
    int counted = d && (d->min > 0 || d->max >= 0);
    if (x->utf8_left) {
        if (c < x->lo || c > x->hi)
            return 0;
        x->utf8_left--;
        x->lo = x->utf8_left ? 0x80 : 0;   /* zero when done: equal states, equal bytes */
        x->hi = x->utf8_left ? 0xBF : 0;
        return obj ? key_byte(obj, x, c, 1) : 1;
    }
    switch (x->phase) {
    case S_ESC:
        if (c == 'u') {
            x->phase = S_HEX;
            x->hex = 4;
            return 1;
        }
        if (!strchr("\"\\/bfnrt", c) || !c)
            return 0;
        x->phase = S_CHAR;
        return 1;
    case S_LOW_BS:
        x->phase = S_LOW_U;
        return c == '\\';
    case S_LOW_U:
        x->phase = S_LOW_D;
        return c == 'u';
    case S_LOW_D:
        x->phase = S_LOW_2;
        return c == 'd' || c == 'D';
    case S_LOW_2:
        x->phase = S_HEX;
        x->hex = 2;
        return (c >= 'c' && c <= 'f') || (c >= 'C' && c <= 'F');
    case S_HEX:
    case S_HEX_D:
    case S_HEX_HI: {
        int hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (!hex)
            return 0;
        if (x->phase == S_HEX_D) {      /* \uD?: 8-B a high surrogate, C-F a lone low one */
            int hi = (c >= '8' && c <= '9') || (c >= 'a' && c <= 'b') || (c >= 'A' && c <= 'B');
            if ((c >= 'c' && c <= 'f') || (c >= 'C' && c <= 'F'))
                return 0;
            x->phase = hi ? S_HEX_HI : S_HEX;
        } else if (x->phase == S_HEX && x->hex == 4 && (c == 'd' || c == 'D')) {
            x->phase = S_HEX_D;
        }
        if (--x->hex == 0)
            x->phase = x->phase == S_HEX_HI ? S_LOW_BS : S_CHAR;
        return 1;
    }
    }
    if (c == '"') {
        if (x->is_key)
            return key_end(sc, s);
        if (counted && (int64_t)x->pos < d->min)
            return 0;
        value_done(sc, s);
        return 1;
    }
    if (c < 0x20)
        return 0;
    if (counted && d->max >= 0 && (int64_t)x->pos >= d->max)
        return 0;
    if (c >= 0x80) {
        if (c < 0xC2 || c > 0xF4)
            return 0;
        x->utf8_left = c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;
        x->lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
        x->hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
    }
    if (counted)
        x->pos++;
    if (c == '\\') {
        /* keys are matched as written: an escape in an object with props
         * could spell one of them and pass for an extra key */
        if (obj && obj->n_props)
            return 0;
        x->phase = S_ESC;
        return obj ? key_byte(obj, x, c, 0) : 1;
    }
    return obj ? key_byte(obj, x, c, 1) : 1;
}

int64_t gd_string_room(const struct zl_json_schema *sc, const struct gd_state *s)
{
    const struct gd_lex *x = &s->lex;
    if (x->kind != LX_STRING || x->phase != S_CHAR || x->utf8_left || (x->is_key && x->cand))
        return -2;      /* a key that may still be a known prop is matched byte by byte */
    const struct gd_node *d = x->node >= 0 ? &sc->nodes[x->node] : NULL;
    if (!d || d->max < 0)
        return -1;
    return d->max > (int64_t)x->pos ? d->max - (int64_t)x->pos : 0;
}

int gd_feed(const struct zl_json_schema *sc, struct gd_state *s, uint8_t c)
{
    switch (s->lex.kind) {
    case LX_STRING: return string_step(sc, s, c);
    case LX_NUMBER: return number_step(sc, s, c);
    case LX_LIT: return lit_step(sc, s, c);
    default: return structural(sc, s, c);
    }
}

int gd_can_end(const struct zl_json_schema *sc, const struct gd_state *s)
{
    if (s->depth)
        return 0;
    if (s->root == GD_ROOT_DONE)
        return 1;
    if (s->lex.kind == LX_NUMBER)
        return N_TERMINAL(s->lex.phase);
    return s->lex.kind == LX_LIT && lit_complete(sc, &s->lex);
}
