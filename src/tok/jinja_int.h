/* Internal to the Jinja interpreter (src/tok/jinja_*.c): arena, tokens,
 * AST, values and the render context. Not a public interface. */
#ifndef TS_TOK_JINJA_INT_H
#define TS_TOK_JINJA_INT_H

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "tok/jinja.h"

/* ---- arena: every parse/render allocation; freed at once ---- */
typedef struct jblock jblock;
typedef struct jarena {
    jblock *head;
    size_t used, cap;   /* bytes handed out / limit */
    jmp_buf *jb;        /* where to jump when the limit is hit */
    ts_err *err;
    ts_status *st;
} jarena;

void *ja_alloc(jarena *a, size_t n);              /* zeroed; longjmps on failure */
char *ja_strdup(jarena *a, const char *s, size_t n);
void ja_free(jarena *a);
/* Records the error and longjmps to a->jb. */
_Noreturn void ja_fail(jarena *a, ts_status st, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- values ---- */
typedef enum { JV_UNDEF, JV_NONE, JV_BOOL, JV_INT, JV_FLOAT, JV_STR, JV_LIST, JV_DICT,
               JV_FUNC, JV_MACRO } jvt;
enum { JD_PLAIN, JD_NAMESPACE, JD_LOOP };   /* dict kinds */
enum { JL_LIST, JL_TUPLE };                 /* list kinds */

typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jnode jnode;
typedef struct jscope jscope;

typedef struct jv {
    uint8_t t;
    uint8_t sub;            /* JV_FUNC: builtin id */
    union {
        bool b;
        int64_t i;
        double f;
        struct { const char *p; size_t n; } s;  /* JV_STR; JV_UNDEF: name (may be NULL) */
        jlist *l;
        jdict *d;
        struct { const jnode *node; jscope *scope; } m;  /* JV_MACRO / caller */
    } u;
} jv;

struct jlist { jv *v; size_t n, cap; uint8_t kind; };
struct jdict { jv *k, *v; size_t n, cap; uint8_t kind; };

/* builtin callables */
enum { JF_RANGE = 1, JF_NAMESPACE, JF_RAISE, JF_STRFTIME, JF_DICT, JF_CALLER };

/* ---- tokens ---- */
typedef enum { TK_DATA, TK_VAR_BEGIN, TK_VAR_END, TK_BLOCK_BEGIN, TK_BLOCK_END, TK_NAME,
               TK_STRING, TK_INT, TK_FLOAT, TK_OP, TK_EOF } tkt;
typedef struct jtok {
    tkt t;
    int line;
    const char *p;      /* text: data, name, op, decoded string */
    size_t n;
    int64_t i;
    double f;
} jtok;

/* Splits src (newlines already normalised to \n) into tokens applying
 * trim_blocks / lstrip_blocks / '-' / '+'. Fails through the arena. */
void jinja_lex(jarena *a, const char *src, size_t len, jtok **toks, size_t *n_toks);

/* ---- AST ---- */
typedef enum {
    N_LIT, N_NAME, N_LIST, N_TUPLE, N_DICT, N_ATTR, N_ITEM, N_SLICE, N_CALL, N_FILTER,
    N_TEST, N_BIN, N_NEG, N_POS, N_AND, N_OR, N_NOT, N_COND, N_CMP,
    S_DATA, S_PRINT, S_IF, S_FOR, S_SET, S_SETBLOCK, S_MACRO, S_CALLBLOCK, S_BREAK,
    S_CONTINUE, S_FILTERBLOCK, S_BODY
} jnk;

/* binary / comparison operators */
enum { OP_ADD = 1, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_CONCAT,
       OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN };

struct jnode {
    jnk k;
    int line;
    int op;                 /* OP_*; N_TEST: negated */
    jv lit;                 /* N_LIT; S_DATA text */
    const char *name;       /* N_NAME, N_ATTR, N_FILTER, N_TEST, S_MACRO; NUL-terminated */
    jnode *a, *b, *c;       /* operands; S_FOR: a=iter b=filter; S_IF: a=cond */
    jnode **args;           /* items / call args / slice parts / N_CMP operands */
    const char **kw;        /* per arg: keyword name or NULL; S_MACRO: param names */
    int *ops;               /* N_CMP: operator per comparison */
    size_t n_args;
    jnode **body, **els;    /* statement lists */
    size_t n_body, n_els;
    jnode *target;          /* S_FOR / S_SET: N_NAME, N_TUPLE of names, or N_ATTR */
};

/* Parses tokens into a statement list (S_BODY node). */
jnode *jinja_parse_tokens(jarena *a, const jtok *toks, size_t n_toks);

/* ---- render context ---- */
struct jscope { jscope *parent; jdict vars; };

typedef struct jsb { char *p; size_t n, cap; } jsb;   /* arena string builder */

typedef struct jctx {
    jarena *a;
    jscope *root;
    jsb *out;
    uint64_t steps, max_steps;
    size_t max_output;
    int depth, max_depth;
    int line;               /* line of the node being evaluated, for errors */
    int edepth;             /* expression recursion depth */
    jscope *scope;          /* innermost scope of the statement being run */
} jctx;

_Noreturn void jx_fail(jctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void jx_step(jctx *c);

/* values (jinja_value.c) */
jv jv_undef(const char *name);
jv jv_none(void);
jv jv_bool(bool b);
jv jv_int(int64_t i);
jv jv_float(double f);
jv jv_str(const char *p, size_t n);
jv jv_cstr(const char *s);
jv jv_newlist(jctx *c, size_t cap);
jv jv_newdict(jctx *c, uint8_t kind);
void jv_list_push(jctx *c, jlist *l, jv v);
void jv_dict_set(jctx *c, jdict *d, jv k, jv v);
jv *jv_dict_get(const jdict *d, const char *key, size_t n);
jv *jv_dict_getv(const jdict *d, jv key);
jv jv_from_json(jctx *c, const json_t *j);
bool jv_truthy(jv v);
bool jv_eq(jv a, jv b);
int jv_cmp(jctx *c, jv a, jv b);            /* <0, 0, >0; fails on unorderable */
const char *jv_type_name(jv v);
void jsb_put(jctx *c, jsb *b, const char *p, size_t n);
void jsb_putc(jctx *c, jsb *b, char ch);
void jsb_printf(jctx *c, jsb *b, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
jv jsb_take(jsb *b);
void jv_write_str(jctx *c, jsb *b, jv v);   /* Python str() */
void jv_write_repr(jctx *c, jsb *b, jv v);  /* Python repr() */
jv jv_to_str(jctx *c, jv v);
void jv_write_json(jctx *c, jsb *b, jv v, int indent, int level);
size_t utf8_len(const char *p, size_t n);
size_t utf8_offset(const char *p, size_t n, size_t cp);  /* byte offset of code point cp */
bool jv_is_num(jv v);
double jv_num(jv v);

/* evaluator (jinja_eval.c) */
jv jx_eval(jctx *c, const jnode *n);
void jx_exec_list(jctx *c, jnode *const *body, size_t n, int *flow);
void jx_exec_in(jctx *c, jnode *const *body, size_t n, jscope *s, int *flow);
jv jx_call_value(jctx *c, jv fn, jv *args, size_t n_args, const char **kw, jv *kwv,
                 size_t n_kw);
jv jx_getattr(jctx *c, jv obj, const char *name, size_t n);
jv jx_getitem(jctx *c, jv obj, jv key);

/* filters, tests, methods, globals (jinja_filters.c, jinja_methods.c) */
typedef struct jargs {      /* evaluated call arguments */
    jv *pos; size_t n_pos;
    const char **kw; jv *kwv; size_t n_kw;
} jargs;
jv jx_filter(jctx *c, const char *name, jv v, jargs *a);
bool jx_test(jctx *c, const char *name, jv v, jargs *a);
bool jx_method(jctx *c, jv obj, const char *name, jargs *a, jv *out);
jv jx_builtin(jctx *c, int id, jargs *a);
int jx_builtin_id(const char *name, size_t n);
jv jx_arg(jargs *a, size_t pos, const char *kw, jv dflt);   /* positional or keyword */
bool jx_filter_known(const char *name);
bool jx_test_known(const char *name);
jv jx_strip(jctx *c, jv s, jv chars, bool left, bool right);
jv jx_str_replace(jctx *c, jv s, jv old, jv new_, int64_t count);

#endif
