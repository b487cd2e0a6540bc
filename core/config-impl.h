/* Internal to the config component: the key table (config-schema.c) and the
 * conversions of one scalar into a typed field, shared by the YAML loader,
 * the defaults, zl_config_dump and the zl_config_get_* accessors (config.c). */
#ifndef ZLIGHT_CONFIG_IMPL_H
#define ZLIGHT_CONFIG_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <zlight/config.h>

enum zl_config_type {
    ZL_CONFIG_STR,       /* char *; min = minimum length */
    ZL_CONFIG_ENUM,      /* char *, one of `allowed` (canonical spelling stored) */
    ZL_CONFIG_INT,       /* int64_t in [min, max] */
    ZL_CONFIG_FLOAT,     /* double in [fmin, fmax] (open at fmin with F_MIN_OPEN) */
    ZL_CONFIG_BOOL,      /* int 0/1 */
    ZL_CONFIG_LOG_LEVEL, /* enum zl_log_level, names in `allowed` */
    ZL_CONFIG_INT_LIST,  /* int32_t[max_items] + int32_t count; items in [min, max] */
    ZL_CONFIG_STR_LIST,  /* char ** + int32_t count; min = minimum item length */
};

enum {
    ZL_CONFIG_F_PATH = 1u << 0,     /* relative values resolve against the YAML file's directory */
    ZL_CONFIG_F_POW2 = 1u << 1,     /* integer must be a power of two */
    ZL_CONFIG_F_MIN_OPEN = 1u << 2, /* float range is open at fmin */
    ZL_CONFIG_F_UNIQUE = 1u << 3,   /* list items must differ */
};

struct zl_config_key {
    const char *key;          /* dotted, "server.port" */
    enum zl_config_type type;
    unsigned flags;           /* ZL_CONFIG_F_* */
    size_t off;               /* offsetof(struct zl_config, value or first list item) */
    size_t count_off;         /* lists: offsetof the int32_t item count */
    const char *def;          /* default as YAML text; lists: items joined by ',' */
    int64_t min, max;         /* ints and int items: range; strings: min length */
    double fmin, fmax;        /* floats */
    int32_t min_items, max_items; /* lists */
    const char *allowed;      /* enums: "a|b|c" */
    const char *doc;          /* one line, shown by conf/zlightd.yaml and tests */
};

extern const struct zl_config_key zl_config_keys[];
extern const size_t zl_config_n_keys;

/* Index of the key named `name` (exact), or -1. */
int zl_config_key_find(const char *name);

/* "an integer", "a list of strings", ... for messages. */
const char *zl_config_type_desc(enum zl_config_type type);

/* Where a key was set in the file: 1-based, line 0 = not set there. */
struct zl_config_mark {
    size_t line, col;
};

/* Converts one scalar `text` (len bytes) into the field of `k`.  `quoted`:
 * the YAML scalar was quoted (a string, never a number or a bool).  `dir`:
 * base for relative ZL_CONFIG_F_PATH values, NULL to keep them as written.
 * Lists: appends one item.  On error returns ZL_EINVAL (ZL_ENOMEM) with a
 * message naming the key but no position: the caller wraps it. */
int zl_config_set_text(struct zl_config *cfg, const struct zl_config_key *k,
                       const char *text, size_t len, int quoted, const char *dir);

/* Empties a list field (before a list from the file replaces the default). */
void zl_config_list_clear(struct zl_config *cfg, const struct zl_config_key *k);

/* Writes the value of `k` as YAML (flow lists, quoted strings) to `out`. */
int zl_config_write_value(const struct zl_config *cfg, const struct zl_config_key *k, FILE *out);

/* Cross-key rules (tensor x pipeline parallel vs devices, ...), run after a
 * load; `marks` (may be NULL) locate the keys in `cfg->file` for messages. */
int zl_config_check(const struct zl_config *cfg, const struct zl_config_mark *marks);

#endif
