/* Render-time state of the Jinja interpreter, shared by jinja-eval.c
 * (expressions), jinja-exec.c (statements), jinja-ops.c (operators,
 * globals) and jinja-filters.c / jinja-methods.c. */
#ifndef ZLIGHT_JINJA_EVAL_IMPL_H
#define ZLIGHT_JINJA_EVAL_IMPL_H

#include "jinja-impl.h"

struct jj_frame;

struct jj_macro {
    const struct jj_node *node;   /* JN_MACRO */
    struct jj_frame *scope;       /* frame it was defined in */
};

/* The body of a {% call %} block, callable as caller() inside the macro. */
struct jj_caller {
    const struct jj_node *body;   /* JN_CALL_BLOCK: params in args, body */
    struct jj_frame *scope;
};

/* One variable scope: the render's globals, a for loop or a macro call. */
struct jj_frame {
    json_t *vars;                 /* object; absent key = undefined */
    struct jj_frame *parent;
    struct jj_macro *macros;
    size_t nmacros;
    struct jj_caller caller;      /* set in a macro invoked by {% call %} */
};

struct jj_ctx {
    struct jj_buf *out;           /* current output (macros capture their own) */
    long steps, max_steps;
    int depth;                    /* macro call depth */
    int loopctl;                  /* 1 break, 2 continue pending */
    bool failed;
    bool overflow;                /* the failure is the output limit */
    char err[512];
    char undef[128];              /* last undefined name looked up */
    json_t **ns;                  /* namespace() objects made by this render */
    size_t nns;
    const struct jj_caller *pending_caller;
};

void jj_args_free(struct jj_args *a);

/* Scopes (jinja-eval.c).  jj_lookup returns a new reference, or NULL and
 * remembers the name for "'x' is undefined"; jj_bind takes v (NULL: unset). */
struct jj_frame *jj_frame_push(struct jj_ctx *c, struct jj_frame *parent);
void jj_frame_pop(struct jj_frame *f);
json_t *jj_lookup(struct jj_ctx *c, struct jj_frame *f, const char *name);
void jj_bind(struct jj_frame *f, const char *name, json_t *v);
/* Counts one evaluation step; false once failed or over the step limit. */
bool jj_step(struct jj_ctx *c, const struct jj_node *n);
/* Fails the render for output over its limit. */
void jj_output_overflow(struct jj_ctx *c, const struct jj_node *n);
/* The value of expression n (new reference; NULL: undefined or failed). */
json_t *jj_eval(struct jj_ctx *c, struct jj_frame *f, const struct jj_node *n);
/* Filter chain n applied to its subject, where node `placeholder` (a
 * {% filter %} block's) stands for value (borrowed); new reference. */
json_t *jj_eval_filter_node(struct jj_ctx *c, struct jj_frame *f, const struct jj_node *n,
                            const struct jj_node *placeholder, json_t *value);
/* Runs a statement list (jinja-exec.c); macros' bodies go through it too. */
void jj_exec_body(struct jj_ctx *c, struct jj_frame *f, const struct jj_list *body);
bool jj_is_namespace(const struct jj_ctx *c, const json_t *v);
/* Unary (l == NULL) / binary / comparison operator of node n; consumes l, r. */
json_t *jj_eval_operator(struct jj_ctx *c, const struct jj_node *n, json_t *l, json_t *r);
/* Python's "fmt % args" (args: one value or a list). */
json_t *jj_percent_format(struct jj_ctx *c, const struct jj_node *n, const json_t *fmt, const json_t *args);
/* Global functions: range, namespace, dict, raise_exception, strftime_now. */
json_t *jj_global(struct jj_ctx *c, const struct jj_node *n, const char *name, const struct jj_args *a);
/* Renders t with `vars` (object; borrowed) as globals into a malloc'd string. */
int jj_render(const struct jj_template *t, json_t *vars, size_t max_output, long max_steps, char **out,
              size_t *out_len);

#endif
