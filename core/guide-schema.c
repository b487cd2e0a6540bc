/* JSON Schema text -> the node table the guide's automaton walks
 * (guide-impl.h).  What is not listed in guide.h is refused by name:
 * a constraint accepted and then not enforced would be a silent lie. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guide-impl.h"

struct cref {
    char *ref;
    int32_t node;
};

struct cctx {
    struct zl_json_schema *s;
    json_t *doc;
    struct cref *refs;
    size_t n_refs;
    int depth;
};

static const char *const k_ignored[] = {
    "title", "description", "default", "examples", "$schema", "$id", "$comment", "format",
    "deprecated", "readOnly", "writeOnly", "$defs", "definitions", "strict", NULL,
};
static const char *const k_known[] = {
    "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
    "minLength", "maxLength", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", NULL,
};

static int in_list(const char *const *l, const char *k)
{
    for (; *l; l++)
        if (!strcmp(*l, k))
            return 1;
    return 0;
}

static int new_node(struct cctx *c, enum gd_kind kind, int32_t *out)
{
    struct zl_json_schema *s = c->s;
    if (s->n_nodes == s->cap) {
        int32_t cap = s->cap ? s->cap * 2 : 16;
        struct gd_node *n = realloc(s->nodes, sizeof(*n) * (size_t)cap);
        if (!n)
            return zl_error(ZL_ENOMEM, "json schema: out of memory");
        s->nodes = n;
        s->cap = cap;
    }
    *out = s->n_nodes;
    s->nodes[s->n_nodes++] = (struct gd_node){.kind = kind, .extra = -1, .items = GD_NODE_ANY,
                                              .min = 0, .max = -1, .ref = -1};
    return ZL_OK;
}

static int compile(struct cctx *c, json_t *j, const char *path, int32_t *out);

/* "#", "#/$defs/Name" or "#/definitions/Name" -> the schema it names. */
static json_t *resolve(struct cctx *c, const char *ref)
{
    if (!strcmp(ref, "#"))
        return c->doc;
    static const char *const pre[] = {"#/$defs/", "#/definitions/"};
    static const char *const key[] = {"$defs", "definitions"};
    for (int i = 0; i < 2; i++) {
        size_t n = strlen(pre[i]);
        if (!strncmp(ref, pre[i], n) && !strchr(ref + n, '/'))
            return json_object_get(json_object_get(c->doc, key[i]), ref + n);
    }
    return NULL;
}

static int compile_ref(struct cctx *c, const char *ref, const char *path, int32_t *out)
{
    for (size_t i = 0; i < c->n_refs; i++)
        if (!strcmp(c->refs[i].ref, ref)) {
            *out = c->refs[i].node;     /* recursion lands on the placeholder */
            return ZL_OK;
        }
    json_t *t = resolve(c, ref);
    if (!t)
        return zl_error(ZL_EINVAL, "json schema: $ref '%s' at %s names no schema "
                        "(#/$defs/NAME or #/definitions/NAME)", ref, path);
    struct cref *r = realloc(c->refs, sizeof(*r) * (c->n_refs + 1));
    if (!r)
        return zl_error(ZL_ENOMEM, "json schema: out of memory");
    c->refs = r;
    int32_t ph, target;
    int rc = new_node(c, GD_ANY, &ph);
    if (rc < 0)
        return rc;
    if (!(r[c->n_refs].ref = strdup(ref)))
        return zl_error(ZL_ENOMEM, "json schema: out of memory");
    r[c->n_refs++].node = ph;
    if ((rc = compile(c, t, ref, &target)) < 0)
        return rc;
    c->s->nodes[ph].ref = target;
    *out = ph;
    return ZL_OK;
}

static int get_count(json_t *j, const char *key, const char *path, int64_t *v)
{
    json_t *x = json_object_get(j, key);
    if (!x)
        return ZL_OK;
    if (!json_is_integer(x) || json_integer_value(x) < 0)
        return zl_error(ZL_EINVAL, "json schema: %s at %s must be a non-negative integer", key,
                        path);
    *v = json_integer_value(x);
    return ZL_OK;
}

static int compile_object(struct cctx *c, json_t *j, const char *path, int32_t id)
{
    json_t *props = json_object_get(j, "properties"), *req = json_object_get(j, "required");
    json_t *add = json_object_get(j, "additionalProperties");
    char sub[512];
    int rc = ZL_OK;
    if (props && !json_is_object(props))
        return zl_error(ZL_EINVAL, "json schema: properties at %s must be an object", path);
    size_t n = props ? json_object_size(props) : 0;
    if (n > GD_MAX_PROPS)
        return zl_error(ZL_EUNSUPPORTED, "json schema: %zu properties at %s (at most %d)", n,
                        path, GD_MAX_PROPS);
    struct gd_prop *p = n ? calloc(n, sizeof(*p)) : NULL;
    if (n && !p)
        return zl_error(ZL_ENOMEM, "json schema: out of memory");
    c->s->nodes[id].props = p;
    const char *key;
    json_t *v;
    int32_t i = 0;
    json_object_foreach(props, key, v) {
        snprintf(sub, sizeof sub, "%s/properties/%s", path, key);
        for (const unsigned char *k = (const unsigned char *)key; *k; k++)
            if (*k < 0x20 || *k == '"' || *k == '\\')
                return zl_error(ZL_EUNSUPPORTED, "json schema: property name at %s needs escapes "
                                "in JSON (keys are matched as written)", sub);
        int32_t node;
        if ((rc = compile(c, v, sub, &node)) < 0)
            return rc;
        p = c->s->nodes[id].props;      /* compile may move the node table, not this array */
        p[i].len = strlen(key);
        if (!(p[i].name = strdup(key)))
            return zl_error(ZL_ENOMEM, "json schema: out of memory");
        p[i].node = node;
        c->s->nodes[id].n_props = ++i;
    }
    if (req && !json_is_array(req))
        return zl_error(ZL_EINVAL, "json schema: required at %s must be an array", path);
    for (size_t k = 0; req && k < json_array_size(req); k++) {
        const char *name = json_string_value(json_array_get(req, k));
        int32_t hit = -1;
        for (int32_t q = 0; name && q < c->s->nodes[id].n_props; q++)
            if (!strcmp(p[q].name, name))
                hit = q;
        if (hit < 0)
            return zl_error(ZL_EUNSUPPORTED, "json schema: required at %s names '%s', which "
                            "properties does not define", path, name ? name : "(not a string)");
        c->s->nodes[id].required |= 1ull << hit;
    }
    int32_t extra = -1;
    if (!add)
        extra = props ? -1 : GD_NODE_ANY;   /* OpenAI strict mode: listed keys only */
    else if (json_is_true(add))
        extra = GD_NODE_ANY;
    else if (json_is_object(add)) {
        snprintf(sub, sizeof sub, "%s/additionalProperties", path);
        if ((rc = compile(c, add, sub, &extra)) < 0)
            return rc;
    } else if (!json_is_false(add))
        return zl_error(ZL_EINVAL, "json schema: additionalProperties at %s must be a boolean "
                        "or a schema", path);
    c->s->nodes[id].extra = extra;
    return ZL_OK;
}

static int compile_array(struct cctx *c, json_t *j, const char *path, int32_t id)
{
    json_t *items = json_object_get(j, "items");
    int64_t min = 0, max = -1;
    int rc = get_count(j, "minItems", path, &min);
    if (rc == ZL_OK)
        rc = get_count(j, "maxItems", path, &max);
    if (rc < 0)
        return rc;
    if (max >= 0 && max < min)
        return zl_error(ZL_EINVAL, "json schema: maxItems below minItems at %s", path);
    int32_t node = GD_NODE_ANY;
    if (items && json_is_array(items))
        return zl_error(ZL_EUNSUPPORTED, "json schema: items as an array (a tuple) at %s", path);
    if (items) {
        char sub[512];
        snprintf(sub, sizeof sub, "%s/items", path);
        if ((rc = compile(c, items, sub, &node)) < 0)
            return rc;
    }
    struct gd_node *n = &c->s->nodes[id];
    n->items = node;
    n->min = min;
    n->max = max;
    return ZL_OK;
}

/* A JSON Schema type name's node kind, -1 for none. */
static int type_kind(const char *type)
{
    static const char *const names[] = {"object", "array", "string", "number", "integer",
                                        "boolean", "null"};
    static const enum gd_kind kinds[] = {GD_OBJECT, GD_ARRAY, GD_STRING, GD_NUMBER, GD_INTEGER,
                                         GD_BOOLEAN, GD_NULL};
    for (size_t i = 0; type && i < sizeof names / sizeof *names; i++)
        if (!strcmp(type, names[i]))
            return (int)kinds[i];
    return -1;
}

static int compile_type(struct cctx *c, json_t *j, const char *type, const char *path,
                        int32_t *out)
{
    int kind = type_kind(type);
    if (kind < 0)
        return zl_error(ZL_EINVAL, "json schema: unknown type '%s' at %s", type, path);
    int rc = new_node(c, (enum gd_kind)kind, out);
    if (rc == ZL_OK && kind == GD_OBJECT)
        rc = compile_object(c, j, path, *out);
    else if (rc == ZL_OK && kind == GD_ARRAY)
        rc = compile_array(c, j, path, *out);
    else if (rc == ZL_OK && kind == GD_STRING) {
        int64_t min = 0, max = -1;
        if ((rc = get_count(j, "minLength", path, &min)) == ZL_OK)
            rc = get_count(j, "maxLength", path, &max);
        if (rc == ZL_OK && max >= 0 && max < min)
            rc = zl_error(ZL_EINVAL, "json schema: maxLength below minLength at %s", path);
        c->s->nodes[*out].min = min;
        c->s->nodes[*out].max = max;
    }
    return rc;
}

/* v as compact JSON, each real with the fewest digits that read back
 * equal (jansson's default writes 0.1 as 0.10000000000000001). */
static char *dump_value(json_t *v)
{
    for (int digits = 15; digits <= 17; digits++) {
        char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER |
                                JSON_REAL_PRECISION(digits));
        json_t *back = t ? json_loads(t, JSON_DECODE_ANY, NULL) : NULL;
        int same = back && json_equal(back, v);
        json_decref(back);
        if (same || digits == 17)
            return t;
        free(t);
    }
    return NULL;
}

/* Whether value v is of JSON Schema type `type` (a name or a list). */
static int of_type(json_t *v, json_t *type)
{
    if (json_is_array(type)) {
        for (size_t i = 0; i < json_array_size(type); i++)
            if (of_type(v, json_array_get(type, i)))
                return 1;
        return 0;
    }
    switch (type_kind(json_string_value(type))) {
    case GD_OBJECT: return json_is_object(v);
    case GD_ARRAY: return json_is_array(v);
    case GD_STRING: return json_is_string(v);
    case GD_NUMBER: return json_is_number(v);
    case GD_INTEGER: return json_is_integer(v);
    case GD_BOOLEAN: return json_is_boolean(v);
    case GD_NULL: return json_is_null(v);
    default: return 0;
    }
}

static int compile_enum(struct cctx *c, json_t *vals, json_t *type, const char *path,
                        int32_t *out)
{
    size_t n = json_array_size(vals);
    if (!n || n > GD_MAX_ENUM)
        return zl_error(n ? ZL_EUNSUPPORTED : ZL_EINVAL, "json schema: enum at %s has %zu "
                        "values (1 to %d)", path, n, GD_MAX_ENUM);
    int rc = new_node(c, GD_ENUM, out);
    if (rc < 0)
        return rc;
    struct gd_node *e = &c->s->nodes[*out];
    e->lits = calloc(n, sizeof(*e->lits));
    e->lit_len = calloc(n, sizeof(*e->lit_len));
    if (!e->lits || !e->lit_len)
        return zl_error(ZL_ENOMEM, "json schema: out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(vals, i);
        if (type && !of_type(v, type))
            continue;                   /* both must hold: the value is not one */
        char *t = dump_value(v);
        if (!t)
            return zl_error(ZL_ENOMEM, "json schema: out of memory");
        for (size_t k = 0; k < (size_t)e->n_lits; k++)
            if (!strcmp(e->lits[k], t)) {
                free(t);
                t = NULL;
                break;
            }
        if (!t)
            continue;                   /* a repeated value */
        e->lits[e->n_lits] = t;
        e->lit_len[e->n_lits++] = strlen(t);
    }
    if (!e->n_lits)
        return zl_error(ZL_EINVAL, "json schema: no value of enum/const at %s is of its type",
                        path);
    return ZL_OK;
}

/* The property of branch b named like props[k] of branch 0, -1 none. */
static int32_t prop_named(const struct gd_node *b, const struct gd_prop *p)
{
    for (int32_t i = 0; i < b->n_props; i++)
        if (b->props[i].len == p->len && !memcmp(b->props[i].name, p->name, p->len))
            return i;
    return -1;
}

/* anyOf of objects (they all begin with '{'): taken when one property
 * is required by every branch with enum/const values no two branches
 * share; it then comes first in the object and its value picks the
 * branch (what a forced choice among tools needs). */
static int make_tagged(struct cctx *c, int32_t u, const char *path)
{
    struct zl_json_schema *s = c->s;
    const struct gd_node *b0 = &s->nodes[gd_resolve(s, s->nodes[u].alts[0])];
    for (int32_t k = 0; k < b0->n_props; k++) {
        const struct gd_prop *p = &b0->props[k];
        int32_t n_lits = 0, ok = 1;
        for (int32_t a = 0; ok && a < s->nodes[u].n_alts; a++) {
            const struct gd_node *b = &s->nodes[gd_resolve(s, s->nodes[u].alts[a])];
            int32_t q = prop_named(b, p);
            const struct gd_node *v = q >= 0 ? &s->nodes[gd_resolve(s, b->props[q].node)] : NULL;
            ok = v && v->kind == GD_ENUM && (b->required >> q & 1);
            n_lits += ok ? v->n_lits : 0;
        }
        if (!ok || n_lits > GD_MAX_ENUM)
            continue;
        int32_t tag;
        int rc = new_node(c, GD_ENUM, &tag);
        if (rc < 0)
            return rc;
        struct gd_node *t = &s->nodes[tag];
        t->lits = calloc((size_t)n_lits, sizeof(*t->lits));
        t->lit_len = calloc((size_t)n_lits, sizeof(*t->lit_len));
        int32_t *alt_of = calloc((size_t)n_lits, sizeof(*alt_of));
        if (!t->lits || !t->lit_len || !alt_of) {
            free(alt_of);
            return zl_error(ZL_ENOMEM, "json schema: out of memory");
        }
        for (int32_t a = 0; a < s->nodes[u].n_alts; a++) {
            const struct gd_node *b = &s->nodes[gd_resolve(s, s->nodes[u].alts[a])];
            const struct gd_node *v = &s->nodes[gd_resolve(s, b->props[prop_named(b, p)].node)];
            for (int32_t i = 0; i < v->n_lits; i++) {
                for (int32_t j = 0; j < t->n_lits; j++)
                    if (!strcmp(t->lits[j], v->lits[i])) {
                        free(alt_of);
                        return zl_error(ZL_EUNSUPPORTED, "json schema: branches of %s share "
                                        "the value %s of '%s'", path, v->lits[i], p->name);
                    }
                if (!(t->lits[t->n_lits] = strdup(v->lits[i]))) {
                    free(alt_of);
                    return zl_error(ZL_ENOMEM, "json schema: out of memory");
                }
                t->lit_len[t->n_lits] = v->lit_len[i];
                alt_of[t->n_lits++] = a;
            }
        }
        struct gd_node *n = &s->nodes[u];
        n->props = calloc(1, sizeof(*n->props));
        if (!n->props || !(n->props[0].name = strdup(p->name))) {
            free(alt_of);
            return zl_error(ZL_ENOMEM, "json schema: out of memory");
        }
        n->props[0].len = p->len;
        n->props[0].node = tag;
        n->n_props = 1;
        n->required = 1;
        n->kind = GD_TAGGED;
        n->tag_alt = alt_of;
        return ZL_OK;
    }
    return zl_error(ZL_EUNSUPPORTED, "json schema: the objects of %s need a property every "
                    "branch requires with const/enum values of its own (it picks the branch)",
                    path);
}

static int compile_union(struct cctx *c, json_t *branches, json_t *j, const char *path,
                         const char *what, int32_t *out)
{
    size_t n = json_array_size(branches);
    if (!n)
        return zl_error(ZL_EINVAL, "json schema: %s at %s must be a non-empty array", what, path);
    int32_t *alts = calloc(n, sizeof(*alts));
    if (!alts)
        return zl_error(ZL_ENOMEM, "json schema: out of memory");
    int rc = ZL_OK;
    char sub[512];
    for (size_t i = 0; i < n && rc == ZL_OK; i++) {
        snprintf(sub, sizeof sub, "%s/%s/%zu", path, what, i);
        if (j && json_is_string(json_array_get(branches, i)))   /* a list of type names */
            rc = compile_type(c, j, json_string_value(json_array_get(branches, i)), sub,
                              &alts[i]);
        else
            rc = compile(c, json_array_get(branches, i), sub, &alts[i]);
    }
    if (rc == ZL_OK && n == 1) {
        *out = alts[0];
        free(alts);
        return ZL_OK;
    }
    if (rc == ZL_OK)
        rc = new_node(c, GD_UNION, out);
    if (rc < 0) {
        free(alts);
        return rc;
    }
    struct gd_node *u = &c->s->nodes[*out];
    u->alts = alts;
    u->n_alts = (int32_t)n;
    if (!(u->path = strdup(path)))
        return zl_error(ZL_ENOMEM, "json schema: out of memory");
    int objects = 1;
    for (size_t i = 0; i < n; i++)
        objects &= c->s->nodes[gd_resolve(c->s, alts[i])].kind == GD_OBJECT &&
                   c->s->nodes[gd_resolve(c->s, alts[i])].ref < 0;
    return objects ? make_tagged(c, *out, path) : ZL_OK;
}

static int compile(struct cctx *c, json_t *j, const char *path, int32_t *out)
{
    if (json_is_true(j)) {
        *out = GD_NODE_ANY;
        return ZL_OK;
    }
    if (!json_is_object(j))
        return zl_error(ZL_EINVAL, "json schema: %s is not a schema (an object or true)", path);
    if (++c->depth > 64)
        return zl_error(ZL_EUNSUPPORTED, "json schema: nested deeper than 64 at %s", path);
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v) {
        if (!in_list(k_known, key) && !in_list(k_ignored, key))
            return zl_error(ZL_EUNSUPPORTED, "json schema: keyword '%s' at %s is not supported",
                            key, path);
    }
    json_t *ref = json_object_get(j, "$ref"), *en = json_object_get(j, "enum");
    json_t *cn = json_object_get(j, "const"), *type = json_object_get(j, "type");
    json_t *any = json_object_get(j, "anyOf");
    const char *what = "anyOf";
    if (!any && (any = json_object_get(j, "oneOf")))
        what = "oneOf";     /* disjoint first bytes make oneOf and anyOf one thing */
    json_t *all = json_object_get(j, "allOf");
    const char *combo = all ? "allOf" : ref ? "$ref" : en ? "enum" : cn ? "const"
                      : any ? what : NULL;
    if (combo) {
        /* siblings would have to hold as well: refused, not dropped */
        int values = !strcmp(combo, "enum") || !strcmp(combo, "const");
        json_object_foreach(j, key, v) {
            if (strcmp(key, combo) && !in_list(k_ignored, key) &&
                !(values && !strcmp(key, "type")))  /* it keeps the values of that type */
                return zl_error(ZL_EUNSUPPORTED, "json schema: keyword '%s' beside %s at %s is "
                                "not supported", key, combo, path);
        }
    }
    int rc;
    if (all && (!json_is_array(all) || json_array_size(all) != 1))
        rc = zl_error(ZL_EUNSUPPORTED, "json schema: allOf at %s (only one branch)", path);
    else if (all)
        rc = compile(c, json_array_get(all, 0), path, out);
    else if (ref && !json_is_string(ref))
        rc = zl_error(ZL_EINVAL, "json schema: $ref at %s must be a string", path);
    else if (ref)
        rc = compile_ref(c, json_string_value(ref), path, out);
    else if (en && !json_is_array(en))
        rc = zl_error(ZL_EINVAL, "json schema: enum at %s must be an array", path);
    else if (en || cn) {
        json_t *one = cn ? json_pack("[O]", cn) : NULL;
        rc = compile_enum(c, cn ? one : en, type, path, out);
        json_decref(one);
    } else if (any && !json_is_array(any))
        rc = zl_error(ZL_EINVAL, "json schema: %s at %s must be an array", what, path);
    else if (any)
        rc = compile_union(c, any, NULL, path, what, out);
    else if (json_is_string(type))
        rc = compile_type(c, j, json_string_value(type), path, out);
    else if (json_is_array(type))
        rc = compile_union(c, type, j, path, "type", out);
    else if (type)
        rc = zl_error(ZL_EINVAL, "json schema: type at %s must be a name or a list", path);
    else if (json_object_get(j, "properties") || json_object_get(j, "required") ||
             json_object_get(j, "additionalProperties"))
        rc = compile_type(c, j, "object", path, out);
    else if (json_object_get(j, "items") || json_object_get(j, "minItems") ||
             json_object_get(j, "maxItems"))
        rc = compile_type(c, j, "array", path, out);
    else if (json_object_get(j, "minLength") || json_object_get(j, "maxLength"))
        rc = compile_type(c, j, "string", path, out);
    else {
        *out = GD_NODE_ANY;
        rc = ZL_OK;
    }
    c->depth--;
    return rc;
}

int32_t gd_resolve(const struct zl_json_schema *s, int32_t n)
{
    for (int hops = 0; s->nodes[n].ref >= 0 && hops < 1000; hops++)
        n = s->nodes[n].ref;
    return n;
}

/* set[b]: byte b can begin a value of node n. */
static int first_bytes(const struct zl_json_schema *s, int32_t n, uint8_t set[256], int hops)
{
    n = gd_resolve(s, n);
    if (s->nodes[n].ref >= 0 || hops > 64)
        return zl_error(ZL_EUNSUPPORTED, "json schema: a $ref or anyOf cycle that never "
                        "begins a value");
    const struct gd_node *d = &s->nodes[n];
    const char *lead = "";
    switch (d->kind) {
    case GD_ANY: lead = "{[\"-0123456789tfn"; break;
    case GD_OBJECT: case GD_TAGGED: lead = "{"; break;
    case GD_ARRAY: lead = "["; break;
    case GD_STRING: lead = "\""; break;
    case GD_NUMBER: case GD_INTEGER: lead = "-0123456789"; break;
    case GD_BOOLEAN: lead = "tf"; break;
    case GD_NULL: lead = "n"; break;
    case GD_ENUM:
        for (int32_t i = 0; i < d->n_lits; i++)
            set[(uint8_t)d->lits[i][0]] = 1;
        break;
    case GD_UNION:
        for (int32_t i = 0; i < d->n_alts; i++) {
            int rc = first_bytes(s, d->alts[i], set, hops + 1);
            if (rc < 0)
                return rc;
        }
        break;
    }
    for (; *lead; lead++)
        set[(uint8_t)*lead] = 1;
    return ZL_OK;
}

/* Each union's table of which branch a first byte picks; branches that
 * could begin with the same byte would need a guess. */
static int build_picks(struct zl_json_schema *s)
{
    for (int32_t n = 0; n < s->n_nodes; n++) {
        struct gd_node *u = &s->nodes[n];
        if (u->kind != GD_UNION)
            continue;
        if (!(u->pick = malloc(256)))
            return zl_error(ZL_ENOMEM, "json schema: out of memory");
        memset(u->pick, -1, 256);
        for (int32_t a = 0; a < u->n_alts; a++) {
            uint8_t set[256] = {0};
            int rc = first_bytes(s, u->alts[a], set, 0);
            if (rc < 0)
                return rc;
            for (int b = 0; b < 256; b++) {
                if (!set[b])
                    continue;
                if (u->pick[b] >= 0)
                    return zl_error(ZL_EUNSUPPORTED, "json schema: branches %d and %d of %s "
                                    "can both begin with '%c' (branches must begin "
                                    "differently, e.g. a type and null)", u->pick[b], a,
                                    u->path, b);
                u->pick[b] = (int8_t)a;
            }
        }
    }
    return ZL_OK;
}

int zl_json_schema_compile(const char *text, size_t len, struct zl_json_schema **out)
{
    *out = NULL;
    json_error_t err;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
    if (!doc)
        return zl_error(ZL_EINVAL, "json schema: not JSON (%s at line %d column %d)", err.text,
                        err.line, err.column);
    struct zl_json_schema *s = calloc(1, sizeof(*s));
    struct cctx c = {.s = s, .doc = doc};
    int rc = s ? ZL_OK : zl_error(ZL_ENOMEM, "json schema: out of memory");
    int32_t any, obj, arr;
    if (rc == ZL_OK && (rc = new_node(&c, GD_ANY, &any)) == ZL_OK &&
        (rc = new_node(&c, GD_OBJECT, &obj)) == ZL_OK &&
        (rc = new_node(&c, GD_ARRAY, &arr)) == ZL_OK) {
        s->nodes[obj].extra = GD_NODE_ANY;
        rc = compile(&c, doc, "#", &s->root);
    }
    for (int32_t n = 0; rc == ZL_OK && n < s->n_nodes; n++)
        if (s->nodes[n].ref >= 0 && s->nodes[gd_resolve(s, n)].ref >= 0)
            rc = zl_error(ZL_EUNSUPPORTED, "json schema: $ref cycle without a value");
    if (rc == ZL_OK)
        rc = build_picks(s);
    for (size_t i = 0; i < c.n_refs; i++)
        free(c.refs[i].ref);
    free(c.refs);
    json_decref(doc);
    if (rc < 0) {
        zl_json_schema_free(s);
        return rc;
    }
    *out = s;
    return ZL_OK;
}

void zl_json_schema_free(struct zl_json_schema *s)
{
    if (!s)
        return;
    for (int32_t i = 0; i < s->n_nodes; i++) {
        struct gd_node *n = &s->nodes[i];
        for (int32_t k = 0; n->props && k < n->n_props; k++)
            free(n->props[k].name);
        for (int32_t k = 0; n->lits && k < n->n_lits; k++)
            free(n->lits[k]);
        free(n->props);
        free(n->lits);
        free(n->lit_len);
        free(n->alts);
        free(n->pick);
        free(n->tag_alt);
        free(n->path);
    }
    free(s->nodes);
    free(s);
}
