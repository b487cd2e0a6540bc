/* zlightd configuration: YAML (libyaml events) into struct zl_config.
 *
 * The file is one mapping of sections (model:, server:, ...) holding the
 * keys of config-schema.c; a dotted key at the top level ("server.port: 1")
 * is the same as its nested form.  A null value (empty, ~, null) keeps the
 * default.  Relative model.path, model.tokenizer, model.chat_template and
 * plugins.paths resolve against the absolute directory of the YAML file (of
 * `name` for zl_config_load_string), so a config and its model can move
 * together.  Anchors, aliases, tags and several documents are refused: a
 * config is short and should read the same to people and to zlight. */
#define _GNU_SOURCE
#include "config-impl.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define CONFIG_MAX_FILE (16u << 20)

struct loader {
    yaml_parser_t parser;
    const char *name;              /* file name for messages */
    const char *text;              /* the whole input, [len] */
    size_t len;
    char *dir;                     /* base of relative paths */
    struct zl_config *cfg;
    struct zl_config_mark *marks;  /* [zl_config_n_keys] where each key was set */
};

static int fail_at(const struct loader *ld, yaml_mark_t m, const char *fmt, ...) ZL_PRINTF(3, 4);

static int fail_at(const struct loader *ld, yaml_mark_t m, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return zl_error(ZL_EINVAL, "%s:%zu:%zu: %s", ld->name, m.line + 1, m.column + 1, msg);
}

/* libyaml's problem text and mark, with a hint for the usual culprits. */
static int syntax_error(const struct loader *ld)
{
    const yaml_parser_t *p = &ld->parser;
    if (p->error == YAML_MEMORY_ERROR)
        return zl_error(ZL_ENOMEM, "%s: out of memory while parsing", ld->name);
    const char *problem = p->problem ? p->problem : "YAML error";
    yaml_mark_t m = p->problem_mark;
    if (p->error == YAML_READER_ERROR) {    /* bad encoding: only a byte offset is known */
        m.index = p->problem_offset;
        m.line = m.column = 0;
        for (size_t i = 0; i < m.index && i < ld->len; i++, m.column++)
            if (ld->text[i] == '\n')
                m.line++, m.column = (size_t)-1;
        return fail_at(ld, m, "%s (byte 0x%02x)", problem, p->problem_value & 0xff);
    }
    const char *hint = "";
    if (m.index < ld->len && ld->text[m.index] == '\t')
        hint = "; YAML indents with spaces, not tabs";
    else if (strstr(problem, "expected key") || strstr(problem, "not allowed in this context") ||
             strstr(problem, "expected <block end>"))
        hint = "; check the indentation";
    const yaml_mark_t *c = &p->context_mark;
    if (p->context && c->index != m.index)
        return fail_at(ld, m, "%s (%s at line %zu, column %zu%s)", problem, p->context, c->line + 1,
                       c->column + 1, hint);
    if (p->context || *hint)
        return fail_at(ld, m, "%s (%s%s)", problem, p->context ? p->context : "", p->context ? hint : hint + 2);
    return fail_at(ld, m, "%s", problem);
}

/* The next event; refuses what zlight does not support.  On error nothing
 * is left to delete. */
static int next(struct loader *ld, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&ld->parser, ev))
        return syntax_error(ld);
    const yaml_char_t *anchor = NULL, *tag = NULL;
    switch (ev->type) {
    case YAML_ALIAS_EVENT:
        anchor = ev->data.alias.anchor;
        break;
    case YAML_SCALAR_EVENT:
        anchor = ev->data.scalar.anchor, tag = ev->data.scalar.tag;
        break;
    case YAML_SEQUENCE_START_EVENT:
        anchor = ev->data.sequence_start.anchor, tag = ev->data.sequence_start.tag;
        break;
    case YAML_MAPPING_START_EVENT:
        anchor = ev->data.mapping_start.anchor, tag = ev->data.mapping_start.tag;
        break;
    default:
        break;
    }
    int rc = ZL_OK;
    if (anchor)
        rc = fail_at(ld, ev->start_mark, "anchors and aliases are not supported ('%c%s')",
                     ev->type == YAML_ALIAS_EVENT ? '*' : '&', (const char *)anchor);
    else if (tag)
        rc = fail_at(ld, ev->start_mark, "tags are not supported ('%s')", (const char *)tag);
    if (rc < 0)
        yaml_event_delete(ev);
    return rc;
}

static int is_null(const yaml_event_t *ev)
{
    if (ev->type != YAML_SCALAR_EVENT || ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *s = (const char *)ev->data.scalar.value;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

/* "a mapping", "a sequence" or the scalar quoted, for "got ..." messages. */
static const char *got(const yaml_event_t *ev, char *buf, size_t n)
{
    if (ev->type == YAML_MAPPING_START_EVENT)
        return "a mapping";
    if (ev->type == YAML_SEQUENCE_START_EVENT)
        return "a sequence";
    snprintf(buf, n, "'%.64s%s'", (const char *)ev->data.scalar.value,
             ev->data.scalar.length > 64 ? "..." : "");
    return buf;
}

static int set_scalar(struct loader *ld, const struct zl_config_key *k, const yaml_event_t *ev)
{
    int rc = zl_config_set_text(ld->cfg, k, (const char *)ev->data.scalar.value, ev->data.scalar.length,
                                ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE, ld->dir);
    if (rc < 0)
        zl_error_wrap(rc, "%s:%zu:%zu", ld->name, ev->start_mark.line + 1, ev->start_mark.column + 1);
    return rc;
}

static int parse_list(struct loader *ld, const struct zl_config_key *k, yaml_mark_t start)
{
    zl_config_list_clear(ld->cfg, k);
    for (;;) {
        yaml_event_t ev;
        int rc = next(ld, &ev);
        if (rc < 0)
            return rc;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        char buf[80];
        if (ev.type == YAML_SCALAR_EVENT)
            rc = set_scalar(ld, k, &ev);
        else
            rc = fail_at(ld, ev.start_mark, "'%s' items must be scalars, got %s", k->key, got(&ev, buf, sizeof buf));
        yaml_event_delete(&ev);
        if (rc < 0)
            return rc;
    }
    int32_t n = *(int32_t *)((char *)ld->cfg + k->count_off);
    if (n < k->min_items)
        return fail_at(ld, start, "'%s' needs at least %d item(s)", k->key, (int)k->min_items);
    return ZL_OK;
}

static int parse_value(struct loader *ld, const struct zl_config_key *k)
{
    yaml_event_t ev;
    int rc = next(ld, &ev);
    if (rc < 0)
        return rc;
    int list = k->type == ZL_CONFIG_INT_LIST || k->type == ZL_CONFIG_STR_LIST;
    char buf[80];
    if (is_null(&ev))
        rc = ZL_OK;     /* keeps the default */
    else if (list && ev.type == YAML_SEQUENCE_START_EVENT)
        rc = parse_list(ld, k, ev.start_mark);
    else if (!list && ev.type == YAML_SCALAR_EVENT)
        rc = set_scalar(ld, k, &ev);
    else if (k->type == ZL_CONFIG_ENUM || k->type == ZL_CONFIG_LOG_LEVEL)
        rc = fail_at(ld, ev.start_mark, "'%s' must be one of %s, got %s", k->key, k->allowed,
                     got(&ev, buf, sizeof buf));
    else
        rc = fail_at(ld, ev.start_mark, "'%s' must be %s, got %s", k->key, zl_config_type_desc(k->type),
                     got(&ev, buf, sizeof buf));
    yaml_event_delete(&ev);
    return rc;
}

/* Index of the first key under section `name` ("model" -> model.path), or -1. */
static int section_find(const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < zl_config_n_keys; i++)
        if (!strncmp(zl_config_keys[i].key, name, n) && zl_config_keys[i].key[n] == '.')
            return (int)i;
    return -1;
}

/* Optimal string alignment distance (edits, counting a swap of two
 * neighbours as one); large for long strings, which get no suggestion. */
static size_t edit_distance(const char *a, const char *b)
{
    enum { MAX = 64 };
    size_t na = strlen(a), nb = strlen(b), d[MAX + 1][MAX + 1];
    if (na > MAX || nb > MAX)
        return SIZE_MAX;
    for (size_t i = 0; i <= na; i++)
        for (size_t j = 0; j <= nb; j++) {
            if (!i || !j) {
                d[i][j] = i + j;
                continue;
            }
            size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[na][nb];
}

/* The known name closest to `key` under `prefix` ("" = top level) written
 * to buf, else a key elsewhere whose last part is `key` ("port" ->
 * "server.port"); 0 when nothing is close. */
static int suggest(const char *prefix, const char *key, char *buf, size_t n)
{
    size_t pl = strlen(prefix), best = SIZE_MAX;
    for (size_t i = 0; i < zl_config_n_keys; i++) {
        const char *name = zl_config_keys[i].key;
        if (pl && (strncmp(name, prefix, pl) || name[pl] != '.'))
            continue;
        const char *child = name + pl + (pl != 0);
        char part[65];
        snprintf(part, sizeof part, "%.*s", (int)strcspn(child, "."), child);
        size_t d = edit_distance(key, part);
        if (d < best && d <= (strlen(part) > 4 ? 2u : 1u)) {
            best = d;
            snprintf(buf, n, "%s%s%s", prefix, pl ? "." : "", part);
        }
    }
    for (size_t i = 0; best == SIZE_MAX && i < zl_config_n_keys; i++) {
        const char *dot = strrchr(zl_config_keys[i].key, '.');
        if (dot && !strcmp(dot + 1, key)) {
            snprintf(buf, n, "%s", zl_config_keys[i].key);
            best = 0;
        }
    }
    return best != SIZE_MAX;
}

static int parse_mapping(struct loader *ld, const char *prefix);

/* The value of section key `full`: a mapping, or null for all defaults. */
static int parse_section(struct loader *ld, const char *full)
{
    yaml_event_t ev;
    int rc = next(ld, &ev);
    if (rc < 0)
        return rc;
    char buf[80];
    if (ev.type == YAML_MAPPING_START_EVENT)
        rc = parse_mapping(ld, full);
    else if (!is_null(&ev))
        rc = fail_at(ld, ev.start_mark, "'%s' is a section and must be a mapping of its keys, got %s", full,
                     got(&ev, buf, sizeof buf));
    yaml_event_delete(&ev);
    return rc;
}

/* One key of the mapping under `prefix`; `seen` holds the sections met there. */
static int parse_key(struct loader *ld, const char *prefix, const yaml_event_t *kev, size_t *seen)
{
    const char *key = (const char *)kev->data.scalar.value;
    char *full = NULL;
    if (asprintf(&full, "%s%s%s", prefix, *prefix ? "." : "", key) < 0)
        return zl_error(ZL_ENOMEM, "config: out of memory");
    int rc, i = zl_config_key_find(full), sec = i < 0 ? section_find(full) : -1;
    size_t line = kev->start_mark.line + 1;
    if (i >= 0 && ld->marks[i].line) {
        rc = fail_at(ld, kev->start_mark, "duplicate key '%s' (first set at line %zu)", full, ld->marks[i].line);
    } else if (i >= 0) {
        ld->marks[i] = (struct zl_config_mark){ line, kev->start_mark.column + 1 };
        rc = parse_value(ld, &zl_config_keys[i]);
    } else if (sec >= 0 && seen[sec]) {
        rc = fail_at(ld, kev->start_mark, "duplicate key '%s' (first at line %zu)", full, seen[sec]);
    } else if (sec >= 0) {
        seen[sec] = line;
        rc = parse_section(ld, full);
    } else {
        char near[160];
        if (suggest(prefix, key, near, sizeof near))
            rc = fail_at(ld, kev->start_mark, "unknown key '%s' (did you mean '%s'?)", full, near);
        else
            rc = fail_at(ld, kev->start_mark, "unknown key '%s'", full);
    }
    free(full);
    return rc;
}

/* Keys of a mapping whose start event has been read, up to its end. */
static int parse_mapping(struct loader *ld, const char *prefix)
{
    size_t *seen = calloc(zl_config_n_keys, sizeof *seen);
    if (!seen)
        return zl_error(ZL_ENOMEM, "config: out of memory");
    int rc;
    for (;;) {
        yaml_event_t ev;
        if ((rc = next(ld, &ev)) < 0)
            break;
        char buf[80];
        if (ev.type == YAML_MAPPING_END_EVENT)
            rc = 1;
        else if (ev.type != YAML_SCALAR_EVENT)
            rc = fail_at(ld, ev.start_mark, "keys must be scalars, got %s", got(&ev, buf, sizeof buf));
        else
            rc = parse_key(ld, prefix, &ev, seen);
        yaml_event_delete(&ev);
        if (rc)
            break;
    }
    free(seen);
    return rc < 0 ? rc : ZL_OK;
}

/* Stream: nothing (all defaults) or one document holding a mapping or null. */
static int parse_stream(struct loader *ld)
{
    yaml_event_t ev;
    char buf[80];
    int rc = next(ld, &ev);         /* stream start */
    if (rc < 0)
        return rc;
    yaml_event_delete(&ev);
    if ((rc = next(ld, &ev)) < 0)
        return rc;
    int empty = ev.type == YAML_STREAM_END_EVENT;
    yaml_event_delete(&ev);         /* the document start */
    if (empty)
        return ZL_OK;
    if ((rc = next(ld, &ev)) < 0)
        return rc;
    if (ev.type == YAML_MAPPING_START_EVENT)
        rc = parse_mapping(ld, "");
    else if (!is_null(&ev))
        rc = fail_at(ld, ev.start_mark, "the document must be a mapping of config keys, got %s",
                     got(&ev, buf, sizeof buf));
    yaml_event_delete(&ev);
    if (rc < 0 || (rc = next(ld, &ev)) < 0)     /* document end */
        return rc;
    yaml_event_delete(&ev);
    if ((rc = next(ld, &ev)) < 0)
        return rc;
    if (ev.type != YAML_STREAM_END_EVENT)
        rc = fail_at(ld, ev.start_mark, "a config holds one YAML document; a second one starts here");
    yaml_event_delete(&ev);
    return rc;
}

/* Absolute directory of `name` (as written when it cannot be resolved). */
static char *base_dir(const char *name)
{
    const char *slash = strrchr(name, '/');
    char *dir = slash ? strndup(name, slash == name ? 1 : (size_t)(slash - name)) : strdup(".");
    char *abs = dir ? realpath(dir, NULL) : NULL;
    if (abs) {
        free(dir);
        return abs;
    }
    return dir;
}

static int load_text(const char *text, size_t len, const char *name, struct zl_config **out)
{
    struct zl_config *cfg = NULL;
    int rc = zl_config_defaults(&cfg);
    if (rc < 0)
        return rc;
    struct loader ld = { .name = name, .text = text, .len = len, .cfg = cfg };
    free(cfg->file);
    cfg->file = strdup(name);
    ld.dir = base_dir(name);
    ld.marks = calloc(zl_config_n_keys, sizeof *ld.marks);
    if (!cfg->file || !ld.dir || !ld.marks || !yaml_parser_initialize(&ld.parser)) {
        free(ld.marks);
        free(ld.dir);
        zl_config_free(cfg);
        return zl_error(ZL_ENOMEM, "%s: out of memory", name);
    }
    yaml_parser_set_input_string(&ld.parser, (const unsigned char *)text, len);
    rc = parse_stream(&ld);
    if (rc == ZL_OK)
        rc = zl_config_check(cfg, ld.marks);
    yaml_parser_delete(&ld.parser);
    free(ld.marks);
    free(ld.dir);
    if (rc < 0) {
        zl_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return ZL_OK;
}

int zl_config_load_string(const char *yaml, const char *name, struct zl_config **out)
{
    if (!yaml || !out)
        return zl_error(ZL_EINVAL, "zl_config_load_string: NULL argument");
    return load_text(yaml, strlen(yaml), name ? name : "<string>", out);
}

int zl_config_load(const char *path, struct zl_config **out)
{
    if (!path || !out)
        return zl_error(ZL_EINVAL, "zl_config_load: NULL argument");
    FILE *f = fopen(path, "rb");
    if (!f)
        return zl_error(ZL_EIO, "%s: cannot open: %s", path, strerror(errno));
    size_t len = 0, cap = 4096;
    char *text = malloc(cap);
    int rc = text ? ZL_OK : zl_error(ZL_ENOMEM, "%s: out of memory", path);
    while (rc == ZL_OK) {
        if (len == cap) {
            char *grown = cap >= CONFIG_MAX_FILE ? NULL : realloc(text, cap *= 2);
            if (!grown) {
                rc = zl_error(ZL_EIO, "%s: larger than %u MiB, not a config", path, CONFIG_MAX_FILE >> 20);
                break;
            }
            text = grown;
        }
        size_t got_n = fread(text + len, 1, cap - len, f);
        len += got_n;
        if (ferror(f))
            rc = zl_error(ZL_EIO, "%s: cannot read: %s", path, strerror(errno));
        else if (!got_n)
            break;
    }
    fclose(f);
    if (rc == ZL_OK)
        rc = load_text(text, len, path, out);
    free(text);
    return rc;
}

int zl_config_defaults(struct zl_config **out)
{
    struct zl_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg || !(cfg->file = strdup(""))) {
        free(cfg);
        return zl_error(ZL_ENOMEM, "config: out of memory");
    }
    for (size_t i = 0; i < zl_config_n_keys; i++) {
        const struct zl_config_key *k = &zl_config_keys[i];
        int rc = ZL_OK;
        if (k->type == ZL_CONFIG_INT_LIST || k->type == ZL_CONFIG_STR_LIST) {
            for (const char *d = k->def; *d && rc == ZL_OK; d += strcspn(d, ",") + (d[strcspn(d, ",")] != 0))
                rc = zl_config_set_text(cfg, k, d, strcspn(d, ","), 0, NULL);
        } else {
            rc = zl_config_set_text(cfg, k, k->def, strlen(k->def), 0, NULL);
        }
        if (rc < 0) {   /* a bad default is a bug of the table, reported rather than hidden */
            zl_config_free(cfg);
            return zl_error_wrap(rc, "config default of '%s'", k->key);
        }
    }
    *out = cfg;
    return ZL_OK;
}

void zl_config_free(struct zl_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < zl_config_n_keys; i++) {
        const struct zl_config_key *k = &zl_config_keys[i];
        if (k->type == ZL_CONFIG_STR || k->type == ZL_CONFIG_ENUM)
            free(*(char **)((char *)cfg + k->off));
        else if (k->type == ZL_CONFIG_STR_LIST)
            zl_config_list_clear(cfg, k);
    }
    free(cfg->file);
    free(cfg);
}

/* Number of leading sections ("a" of "a.b") that keys `a` and `b` share. */
static int common_sections(const char *a, const char *b)
{
    int n = 0;
    for (const char *da, *db; (da = strchr(a, '.')) && (db = strchr(b, '.')); n++, a = da + 1, b = db + 1)
        if (da - a != db - b || strncmp(a, b, (size_t)(da - a)))
            break;
    return n;
}

int zl_config_dump(const struct zl_config *cfg, FILE *out)
{
    if (!cfg || !out)
        return zl_error(ZL_EINVAL, "zl_config_dump: NULL argument");
    fputs("# zlight configuration, every key resolved", out);
    if (cfg->file && *cfg->file) {
        fputs(", loaded from ", out);
        for (const char *c = cfg->file; *c; c++)   /* a newline would end the comment */
            fputc((unsigned char)*c < 0x20 ? '?' : *c, out);
    }
    fputc('\n', out);
    const char *prev = "";
    for (size_t i = 0; i < zl_config_n_keys; i++) {
        const char *key = zl_config_keys[i].key, *part = key;
        int depth = 0, same = common_sections(prev, key);
        for (const char *dot; (dot = strchr(part, '.')); part = dot + 1, depth++)
            if (depth >= same)  /* opens a section the previous key was not in */
                fprintf(out, "%*s%.*s:\n", 2 * depth, "", (int)(dot - part), part);
        fprintf(out, "%*s%s: ", 2 * depth, "", part);
        int rc = zl_config_write_value(cfg, &zl_config_keys[i], out);
        if (rc < 0)
            return rc;
        fputc('\n', out);
        prev = key;
    }
    return fflush(out) || ferror(out) ? zl_error(ZL_EIO, "config dump: write failed") : ZL_OK;
}

/* Copies the value of `key` (size bytes) to `out` when its type is in
 * `types` (a mask of 1 << ZL_CONFIG_*); log levels read as their name. */
static int get_value(const struct zl_config *cfg, const char *key, unsigned types, const char *want,
                     void *out, size_t size)
{
    if (!cfg || !key || !out)
        return zl_error(ZL_EINVAL, "zl_config_get: NULL argument");
    int i = zl_config_key_find(key);
    if (i < 0)
        return zl_error(ZL_ENOTFOUND, "unknown config key '%s'", key);
    const struct zl_config_key *k = &zl_config_keys[i];
    if (!(types & (1u << k->type)))
        return zl_error(ZL_EINVAL, "config key '%s' is %s, not %s", key, zl_config_type_desc(k->type), want);
    const void *field = (const char *)cfg + k->off;
    if (k->type == ZL_CONFIG_LOG_LEVEL)
        *(const char **)out = zl_log_level_name(*(const enum zl_log_level *)field);
    else
        memcpy(out, field, size);
    return ZL_OK;
}

int zl_config_get_str(const struct zl_config *cfg, const char *key, const char **out)
{
    unsigned types = 1u << ZL_CONFIG_STR | 1u << ZL_CONFIG_ENUM | 1u << ZL_CONFIG_LOG_LEVEL;
    return get_value(cfg, key, types, "a string", out, sizeof *out);
}

int zl_config_get_i64(const struct zl_config *cfg, const char *key, int64_t *out)
{
    return get_value(cfg, key, 1u << ZL_CONFIG_INT, "an integer", out, sizeof *out);
}

int zl_config_get_f64(const struct zl_config *cfg, const char *key, double *out)
{
    return get_value(cfg, key, 1u << ZL_CONFIG_FLOAT, "a number", out, sizeof *out);
}

int zl_config_get_bool(const struct zl_config *cfg, const char *key, int *out)
{
    return get_value(cfg, key, 1u << ZL_CONFIG_BOOL, "a boolean", out, sizeof *out);
}
