/* Jinja parser: tokens -> AST, following Jinja2's grammar and operator
 * precedence (filters and tests bind tighter than arithmetic). */
#include <string.h>
#include "tok/jinja_int.h"

#define MAX_PARSE_DEPTH 200

typedef struct parser {
    jarena *a;
    const jtok *t;
    size_t n, i;
    int depth;
    int loops;          /* enclosing for loops (for break / continue) */
} parser;

typedef struct nvec { jnode **v; const char **kw; size_t n, cap; } nvec;

static void nv_push(parser *P, nvec *v, jnode *x, const char *kw) {
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 4;
        jnode **nn = ja_alloc(P->a, nc * sizeof *nn);
        const char **nk = ja_alloc(P->a, nc * sizeof *nk);
        if (v->n) {
            memcpy(nn, v->v, v->n * sizeof *nn);
            memcpy(nk, v->kw, v->n * sizeof *nk);
        }
        v->v = nn;
        v->kw = nk;
        v->cap = nc;
    }
    v->kw[v->n] = kw;
    v->v[v->n++] = x;
}

static const jtok *cur(parser *P) { return &P->t[P->i < P->n ? P->i : P->n - 1]; }
static const jtok *peek_at(parser *P, size_t k) {
    return &P->t[P->i + k < P->n ? P->i + k : P->n - 1];
}
static bool tok_is(const jtok *k, tkt t, const char *s) {
    return k->t == t && (!s || (k->n == strlen(s) && memcmp(k->p, s, k->n) == 0));
}
static bool is_op(parser *P, const char *s) { return tok_is(cur(P), TK_OP, s); }
static bool is_name(parser *P, const char *s) { return tok_is(cur(P), TK_NAME, s); }

static const char *tok_desc(parser *P, const jtok *k) {
    switch (k->t) {
    case TK_EOF: return "end of template";
    case TK_VAR_END: return "'}}'";
    case TK_BLOCK_END: return "'%}'";
    case TK_VAR_BEGIN: return "'{{'";
    case TK_BLOCK_BEGIN: return "'{%'";
    case TK_DATA: return "text";
    case TK_STRING: return "a string";
    default: {
        size_t n = k->n > 40 ? 40 : k->n;
        char *s = ja_alloc(P->a, n + 3);
        s[0] = '\'';
        memcpy(s + 1, k->p, n);
        s[n + 1] = '\'';
        return s;
    }
    }
}

static _Noreturn void perr(parser *P, const char *what) {
    ja_fail(P->a, TS_ERR_FORMAT, cur(P)->line, "%s, got %s", what, tok_desc(P, cur(P)));
}

static void expect_op(parser *P, const char *s) {
    if (!is_op(P, s)) {
        char msg[64];
        snprintf(msg, sizeof msg, "expected '%s'", s);
        perr(P, msg);
    }
    P->i++;
}

static void expect(parser *P, tkt t, const char *what) {
    if (cur(P)->t != t) perr(P, what);
    P->i++;
}

static jnode *nn(parser *P, jnk k, int line) {
    jnode *x = ja_alloc(P->a, sizeof *x);
    x->k = k;
    x->line = line;
    return x;
}

static const char *take_name(parser *P, const char *what) {
    const jtok *k = cur(P);
    if (k->t != TK_NAME) perr(P, what);
    P->i++;
    return ja_strdup(P->a, k->p, k->n);
}

static void enter(parser *P) {
    if (++P->depth > MAX_PARSE_DEPTH)
        ja_fail(P->a, TS_ERR_FORMAT, cur(P)->line, "template nested too deeply");
}

static jnode *parse_expr(parser *P, bool with_cond);
static jnode *parse_tuple(parser *P, bool with_cond, bool explicit_parens);
static jnode *parse_unary(parser *P, bool with_filter);

static void parse_args(parser *P, jnode *call) {
    nvec v = {0};
    expect_op(P, "(");
    while (!is_op(P, ")")) {
        if (v.n) expect_op(P, ",");
        if (is_op(P, ")")) break;
        const char *kw = NULL;
        if (cur(P)->t == TK_NAME && tok_is(peek_at(P, 1), TK_OP, "=")) {
            kw = take_name(P, "expected a name");
            P->i++;
        } else if (v.n && v.kw[v.n - 1]) {
            perr(P, "positional argument after keyword argument");
        }
        nv_push(P, &v, parse_expr(P, true), kw);
    }
    P->i++;
    call->args = v.v;
    call->kw = v.kw;
    call->n_args = v.n;
}

static jnode *parse_primary(parser *P) {
    const jtok *k = cur(P);
    jnode *x;
    switch (k->t) {
    case TK_NAME:
        x = nn(P, N_LIT, k->line);
        P->i++;
        if (tok_is(k, TK_NAME, "true") || tok_is(k, TK_NAME, "True")) x->lit = jv_bool(true);
        else if (tok_is(k, TK_NAME, "false") || tok_is(k, TK_NAME, "False")) x->lit = jv_bool(false);
        else if (tok_is(k, TK_NAME, "none") || tok_is(k, TK_NAME, "None")) x->lit = jv_none();
        else {
            x->k = N_NAME;
            x->name = ja_strdup(P->a, k->p, k->n);
        }
        return x;
    case TK_STRING: {
        x = nn(P, N_LIT, k->line);
        P->i++;
        if (cur(P)->t != TK_STRING) {
            x->lit = jv_str(k->p, k->n);
            return x;
        }
        size_t total = k->n, j = P->i;   /* adjacent literals concatenate */
        for (; j < P->n && P->t[j].t == TK_STRING; j++) total += P->t[j].n;
        char *s = ja_alloc(P->a, total + 1);
        memcpy(s, k->p, k->n);
        size_t o = k->n;
        for (; P->i < j; P->i++) {
            memcpy(s + o, P->t[P->i].p, P->t[P->i].n);
            o += P->t[P->i].n;
        }
        x->lit = jv_str(s, total);
        return x;
    }
    case TK_INT:
        x = nn(P, N_LIT, k->line);
        x->lit = jv_int(k->i);
        P->i++;
        return x;
    case TK_FLOAT:
        x = nn(P, N_LIT, k->line);
        x->lit = jv_float(k->f);
        P->i++;
        return x;
    default:
        break;
    }
    if (is_op(P, "(")) {
        P->i++;
        x = parse_tuple(P, true, true);
        expect_op(P, ")");
        return x;
    }
    if (is_op(P, "[")) {
        x = nn(P, N_LIST, k->line);
        nvec v = {0};
        P->i++;
        while (!is_op(P, "]")) {
            if (v.n) expect_op(P, ",");
            if (is_op(P, "]")) break;
            nv_push(P, &v, parse_expr(P, true), NULL);
        }
        P->i++;
        x->args = v.v;
        x->n_args = v.n;
        return x;
    }
    if (is_op(P, "{")) {
        x = nn(P, N_DICT, k->line);
        nvec v = {0};
        P->i++;
        while (!is_op(P, "}")) {
            if (v.n) expect_op(P, ",");
            if (is_op(P, "}")) break;
            nv_push(P, &v, parse_expr(P, true), NULL);
            expect_op(P, ":");
            nv_push(P, &v, parse_expr(P, true), NULL);
        }
        P->i++;
        x->args = v.v;
        x->n_args = v.n;   /* key, value, key, value, ... */
        return x;
    }
    perr(P, "expected an expression");
}

static jnode *parse_subscript(parser *P, jnode *obj, int line) {
    jnode *part[3] = {NULL, NULL, NULL};
    int n_colon = 0;
    P->i++;   /* '[' */
    for (;;) {
        if (is_op(P, ":")) {
            if (++n_colon > 2) perr(P, "expected ']'");
            P->i++;
            continue;
        }
        if (is_op(P, "]")) break;
        if (part[n_colon]) perr(P, "expected ':' or ']'");
        part[n_colon] = parse_expr(P, true);
    }
    P->i++;
    if (n_colon == 0) {
        if (!part[0]) perr(P, "empty subscript");
        jnode *x = nn(P, N_ITEM, line);
        x->a = obj;
        x->b = part[0];
        return x;
    }
    jnode *x = nn(P, N_SLICE, line);
    x->a = obj;
    x->args = ja_alloc(P->a, 3 * sizeof *x->args);
    memcpy(x->args, part, sizeof part);
    x->n_args = 3;
    return x;
}

static jnode *parse_postfix(parser *P, jnode *x) {
    for (;;) {
        int line = cur(P)->line;
        if (is_op(P, ".")) {
            P->i++;
            if (cur(P)->t == TK_INT) {
                jnode *y = nn(P, N_ITEM, line), *lit = nn(P, N_LIT, line);
                lit->lit = jv_int(cur(P)->i);
                P->i++;
                y->a = x;
                y->b = lit;
                x = y;
                continue;
            }
            jnode *y = nn(P, N_ATTR, line);
            y->a = x;
            y->name = take_name(P, "expected an attribute name after '.'");
            x = y;
        } else if (is_op(P, "[")) {
            x = parse_subscript(P, x, line);
        } else if (is_op(P, "(")) {
            jnode *y = nn(P, N_CALL, line);
            y->a = x;
            parse_args(P, y);
            x = y;
        } else {
            return x;
        }
    }
}

static jnode *parse_filter_expr(parser *P, jnode *x) {
    for (;;) {
        int line = cur(P)->line;
        if (is_op(P, "|")) {
            P->i++;
            jnode *f = nn(P, N_FILTER, line);
            f->a = x;
            f->name = take_name(P, "expected a filter name after '|'");
            if (!jx_filter_known(f->name))
                ja_fail(P->a, TS_ERR_FORMAT, line, "no filter named '%s'", f->name);
            if (is_op(P, "(")) parse_args(P, f);
            x = f;
        } else if (is_name(P, "is")) {
            P->i++;
            jnode *t = nn(P, N_TEST, line);
            t->a = x;
            if (is_name(P, "not")) {
                P->i++;
                t->op = 1;
            }
            t->name = take_name(P, "expected a test name after 'is'");
            if (!jx_test_known(t->name))
                ja_fail(P->a, TS_ERR_FORMAT, line, "no test named '%s'", t->name);
            const jtok *k = cur(P);
            if (is_op(P, "(")) {
                parse_args(P, t);
            } else if ((k->t == TK_NAME || k->t == TK_STRING || k->t == TK_INT || k->t == TK_FLOAT ||
                        is_op(P, "[") || is_op(P, "{")) &&
                       !is_name(P, "else") && !is_name(P, "or") && !is_name(P, "and") &&
                       !is_name(P, "if")) {
                /* one bare argument: "x is divisibleby 3", "x is equalto y" */
                jnode *arg = parse_postfix(P, parse_primary(P));
                t->args = ja_alloc(P->a, sizeof *t->args);
                t->kw = ja_alloc(P->a, sizeof *t->kw);
                t->args[0] = arg;
                t->n_args = 1;
            }
            x = t;
        } else if (is_op(P, "(")) {
            jnode *y = nn(P, N_CALL, line);
            y->a = x;
            parse_args(P, y);
            x = y;
        } else {
            return x;
        }
    }
}

static jnode *parse_unary(parser *P, bool with_filter) {
    enter(P);
    int line = cur(P)->line;
    jnode *x;
    if (is_op(P, "-") || is_op(P, "+")) {
        x = nn(P, is_op(P, "-") ? N_NEG : N_POS, line);
        P->i++;
        x->a = parse_unary(P, false);
    } else {
        x = parse_postfix(P, parse_primary(P));
    }
    if (with_filter) x = parse_filter_expr(P, x);
    P->depth--;
    return x;
}

static jnode *bin(parser *P, int op, jnode *l, jnode *r, int line) {
    jnode *x = nn(P, N_BIN, line);
    x->op = op;
    x->a = l;
    x->b = r;
    return x;
}

static jnode *parse_pow(parser *P) {
    jnode *x = parse_unary(P, true);
    while (is_op(P, "**")) {
        int line = cur(P)->line;
        P->i++;
        x = bin(P, OP_POW, x, parse_unary(P, true), line);
    }
    return x;
}

static jnode *parse_math2(parser *P) {
    jnode *x = parse_pow(P);
    for (;;) {
        int op = is_op(P, "*") ? OP_MUL : is_op(P, "/") ? OP_DIV : is_op(P, "//") ? OP_FLOORDIV
               : is_op(P, "%") ? OP_MOD : 0;
        if (!op) return x;
        int line = cur(P)->line;
        P->i++;
        x = bin(P, op, x, parse_pow(P), line);
    }
}

static jnode *parse_concat(parser *P) {
    jnode *x = parse_math2(P);
    while (is_op(P, "~")) {
        int line = cur(P)->line;
        P->i++;
        x = bin(P, OP_CONCAT, x, parse_math2(P), line);
    }
    return x;
}

static jnode *parse_math1(parser *P) {
    jnode *x = parse_concat(P);
    for (;;) {
        int op = is_op(P, "+") ? OP_ADD : is_op(P, "-") ? OP_SUB : 0;
        if (!op) return x;
        int line = cur(P)->line;
        P->i++;
        x = bin(P, op, x, parse_concat(P), line);
    }
}

static jnode *parse_compare(parser *P) {
    int line = cur(P)->line;
    jnode *first = parse_math1(P);
    nvec v = {0};
    int ops[64];
    size_t n_ops = 0;
    for (;;) {
        int op = is_op(P, "==") ? OP_EQ : is_op(P, "!=") ? OP_NE : is_op(P, "<") ? OP_LT
               : is_op(P, "<=") ? OP_LE : is_op(P, ">") ? OP_GT : is_op(P, ">=") ? OP_GE
               : is_name(P, "in") ? OP_IN : 0;
        if (!op && is_name(P, "not") && tok_is(peek_at(P, 1), TK_NAME, "in")) {
            op = OP_NOTIN;
            P->i++;
        }
        if (!op) break;
        if (n_ops == 64) perr(P, "comparison chain too long");
        P->i++;
        if (!v.n) nv_push(P, &v, first, NULL);
        ops[n_ops++] = op;
        nv_push(P, &v, parse_math1(P), NULL);
    }
    if (!n_ops) return first;
    jnode *x = nn(P, N_CMP, line);
    x->args = v.v;
    x->n_args = v.n;
    x->ops = ja_alloc(P->a, n_ops * sizeof *x->ops);
    memcpy(x->ops, ops, n_ops * sizeof *ops);
    return x;
}

static jnode *parse_not(parser *P) {
    if (is_name(P, "not")) {
        jnode *x = nn(P, N_NOT, cur(P)->line);
        P->i++;
        enter(P);
        x->a = parse_not(P);
        P->depth--;
        return x;
    }
    return parse_compare(P);
}

static jnode *parse_and(parser *P) {
    jnode *x = parse_not(P);
    while (is_name(P, "and")) {
        jnode *y = nn(P, N_AND, cur(P)->line);
        P->i++;
        y->a = x;
        y->b = parse_not(P);
        x = y;
    }
    return x;
}

static jnode *parse_or(parser *P) {
    jnode *x = parse_and(P);
    while (is_name(P, "or")) {
        jnode *y = nn(P, N_OR, cur(P)->line);
        P->i++;
        y->a = x;
        y->b = parse_and(P);
        x = y;
    }
    return x;
}

static jnode *parse_expr(parser *P, bool with_cond) {
    enter(P);
    jnode *x = parse_or(P);
    while (with_cond && is_name(P, "if")) {
        jnode *y = nn(P, N_COND, cur(P)->line);
        P->i++;
        y->a = x;
        y->b = parse_or(P);
        if (is_name(P, "else")) {
            P->i++;
            y->c = parse_expr(P, true);
        }
        x = y;
    }
    P->depth--;
    return x;
}

/* "a, b" -> tuple; a single expression stays itself unless it ends in ','. */
static jnode *parse_tuple(parser *P, bool with_cond, bool explicit_parens) {
    int line = cur(P)->line;
    nvec v = {0};
    bool comma = false;
    for (;;) {
        if (v.n) {
            if (!is_op(P, ",")) break;
            P->i++;
            comma = true;
        }
        if (is_op(P, ")") || cur(P)->t == TK_VAR_END || cur(P)->t == TK_BLOCK_END ||
            is_name(P, "if") || is_name(P, "recursive")) {
            if (!v.n && !explicit_parens) perr(P, "expected an expression");
            break;
        }
        nv_push(P, &v, parse_expr(P, with_cond), NULL);
    }
    if (v.n == 1 && !comma) return v.v[0];
    jnode *x = nn(P, N_TUPLE, line);
    x->args = v.v;
    x->n_args = v.n;
    return x;
}

/* for / set targets: name, "a, b", "(a, b)", or ns.attr (set only) */
static jnode *parse_target(parser *P, bool allow_attr) {
    int line = cur(P)->line;
    bool paren = is_op(P, "(");
    if (paren) P->i++;
    nvec v = {0};
    do {
        if (v.n) P->i++;
        jnode *x = nn(P, N_NAME, cur(P)->line);
        x->name = take_name(P, "expected a variable name");
        if (allow_attr && is_op(P, ".")) {
            P->i++;
            jnode *y = nn(P, N_ATTR, x->line);
            y->a = x;
            y->name = take_name(P, "expected an attribute name");
            x = y;
        }
        nv_push(P, &v, x, NULL);
    } while (is_op(P, ","));
    if (paren) expect_op(P, ")");
    if (v.n == 1) return v.v[0];
    jnode *x = nn(P, N_TUPLE, line);
    x->args = v.v;
    x->n_args = v.n;
    return x;
}

static jnode *parse_body(parser *P, const char *const *ends, const char *opener, int open_line);

static const char *const END_IF[] = {"elif", "else", "endif", NULL};
static const char *const END_FOR[] = {"else", "endfor", NULL};

/* Consumes "{% name" of the closing tag the body stopped at; returns its name. */
static const char *end_tag(parser *P) {
    P->i++;   /* '{%' */
    return take_name(P, "expected a tag name");
}

static jnode *parse_if(parser *P, int line) {
    jnode *x = nn(P, S_IF, line);
    x->a = parse_tuple(P, true, false);
    expect(P, TK_BLOCK_END, "expected '%}'");
    jnode *b = parse_body(P, END_IF, "if", line);
    x->body = b->body;
    x->n_body = b->n_body;
    int eline = cur(P)->line;
    const char *e = end_tag(P);
    if (!strcmp(e, "elif")) {
        x->els = ja_alloc(P->a, sizeof *x->els);
        x->els[0] = parse_if(P, eline);
        x->n_els = 1;
        return x;
    }
    if (!strcmp(e, "else")) {
        expect(P, TK_BLOCK_END, "expected '%}'");
        static const char *const only_end[] = {"endif", NULL};
        b = parse_body(P, only_end, "if", line);
        x->els = b->body;
        x->n_els = b->n_body;
        end_tag(P);
    }
    expect(P, TK_BLOCK_END, "expected '%}'");
    return x;
}

static jnode *parse_stmt(parser *P) {
    const jtok *open = cur(P);
    int line = open->line;
    P->i++;
    const char *tag = take_name(P, "expected a tag name after '{%'");
    jnode *x, *b;
    if (!strcmp(tag, "if")) return parse_if(P, line);
    if (!strcmp(tag, "for")) {
        x = nn(P, S_FOR, line);
        x->target = parse_target(P, false);
        if (!is_name(P, "in")) perr(P, "expected 'in'");
        P->i++;
        x->a = parse_tuple(P, false, false);
        if (is_name(P, "if")) {
            P->i++;
            x->b = parse_expr(P, true);
        }
        if (is_name(P, "recursive"))
            ja_fail(P->a, TS_ERR_FORMAT, line, "recursive for loops are not supported");
        expect(P, TK_BLOCK_END, "expected '%}'");
        P->loops++;
        b = parse_body(P, END_FOR, "for", line);
        P->loops--;
        x->body = b->body;
        x->n_body = b->n_body;
        if (!strcmp(end_tag(P), "else")) {
            expect(P, TK_BLOCK_END, "expected '%}'");
            static const char *const only_end[] = {"endfor", NULL};
            b = parse_body(P, only_end, "for", line);
            x->els = b->body;
            x->n_els = b->n_body;
            end_tag(P);
        }
        expect(P, TK_BLOCK_END, "expected '%}'");
        return x;
    }
    if (!strcmp(tag, "set")) {
        jnode *target = parse_target(P, true);
        if (is_op(P, "=")) {
            P->i++;
            x = nn(P, S_SET, line);
            x->target = target;
            x->a = parse_tuple(P, true, false);
            expect(P, TK_BLOCK_END, "expected '%}'");
            return x;
        }
        x = nn(P, S_SETBLOCK, line);
        x->target = target;
        if (target->k != N_NAME) perr(P, "a block set needs a single variable name");
        expect(P, TK_BLOCK_END, "expected '=' or '%}'");
        static const char *const ends[] = {"endset", NULL};
        b = parse_body(P, ends, "set", line);
        x->body = b->body;
        x->n_body = b->n_body;
        end_tag(P);
        expect(P, TK_BLOCK_END, "expected '%}'");
        return x;
    }
    if (!strcmp(tag, "macro") || !strcmp(tag, "call")) {
        bool is_macro = tag[0] == 'm';
        x = nn(P, is_macro ? S_MACRO : S_CALLBLOCK, line);
        nvec params = {0};
        if (is_macro) x->name = take_name(P, "expected a macro name");
        if (is_macro || is_op(P, "(")) {
            expect_op(P, "(");
            while (!is_op(P, ")")) {
                if (params.n) expect_op(P, ",");
                if (is_op(P, ")")) break;
                const char *pn = take_name(P, "expected a parameter name");
                jnode *dflt = NULL;
                if (is_op(P, "=")) {
                    P->i++;
                    dflt = parse_expr(P, true);
                }
                nv_push(P, &params, dflt, pn);
            }
            P->i++;
        }
        x->args = params.v;     /* default value per parameter (or NULL) */
        x->kw = params.kw;      /* parameter names */
        x->n_args = params.n;
        if (!is_macro) {
            x->a = parse_expr(P, true);
            if (x->a->k != N_CALL) perr(P, "expected a macro call in '{% call %}'");
        }
        expect(P, TK_BLOCK_END, "expected '%}'");
        static const char *const end_m[] = {"endmacro", NULL}, *const end_c[] = {"endcall", NULL};
        int saved = P->loops;
        P->loops = 0;
        b = parse_body(P, is_macro ? end_m : end_c, tag, line);
        P->loops = saved;
        x->body = b->body;
        x->n_body = b->n_body;
        end_tag(P);
        if (is_macro && cur(P)->t == TK_NAME) P->i++;   /* "endmacro name" */
        expect(P, TK_BLOCK_END, "expected '%}'");
        return x;
    }
    if (!strcmp(tag, "break") || !strcmp(tag, "continue")) {
        if (!P->loops) ja_fail(P->a, TS_ERR_FORMAT, line, "'%s' outside of a for loop", tag);
        x = nn(P, tag[0] == 'b' ? S_BREAK : S_CONTINUE, line);
        expect(P, TK_BLOCK_END, "expected '%}'");
        return x;
    }
    if (!strcmp(tag, "filter")) {
        x = nn(P, S_FILTERBLOCK, line);
        /* a chain "f1(args) | f2" applied to the body's text (N_FILTER with a == NULL at the root) */
        jnode *f = NULL;
        do {
            if (f) P->i++;
            jnode *g = nn(P, N_FILTER, cur(P)->line);
            g->a = f;
            g->name = take_name(P, "expected a filter name");
            if (!jx_filter_known(g->name))
                ja_fail(P->a, TS_ERR_FORMAT, g->line, "no filter named '%s'", g->name);
            if (is_op(P, "(")) parse_args(P, g);
            f = g;
        } while (is_op(P, "|"));
        x->a = f;
        expect(P, TK_BLOCK_END, "expected '%}'");
        static const char *const ends[] = {"endfilter", NULL};
        b = parse_body(P, ends, "filter", line);
        x->body = b->body;
        x->n_body = b->n_body;
        end_tag(P);
        expect(P, TK_BLOCK_END, "expected '%}'");
        return x;
    }
    if (!strcmp(tag, "generation")) {
        expect(P, TK_BLOCK_END, "expected '%}'");
        static const char *const ends[] = {"endgeneration", NULL};
        b = parse_body(P, ends, "generation", line);
        end_tag(P);
        expect(P, TK_BLOCK_END, "expected '%}'");
        return b;
    }
    ja_fail(P->a, TS_ERR_FORMAT, line, "unknown or unexpected tag '%s'", tag);
}

static jnode *parse_body(parser *P, const char *const *ends, const char *opener, int open_line) {
    enter(P);
    jnode *body = nn(P, S_BODY, cur(P)->line);
    nvec v = {0};
    for (;;) {
        const jtok *k = cur(P);
        if (k->t == TK_EOF) {
            if (ends)
                ja_fail(P->a, TS_ERR_FORMAT, k->line, "'{%% %s %%}' opened on line %d is never closed",
                        opener, open_line);
            break;
        }
        if (k->t == TK_DATA) {
            jnode *x = nn(P, S_DATA, k->line);
            x->lit = jv_str(k->p, k->n);
            nv_push(P, &v, x, NULL);
            P->i++;
        } else if (k->t == TK_VAR_BEGIN) {
            jnode *x = nn(P, S_PRINT, k->line);
            P->i++;
            x->a = parse_tuple(P, true, false);
            expect(P, TK_VAR_END, "expected '}}'");
            nv_push(P, &v, x, NULL);
        } else if (k->t == TK_BLOCK_BEGIN) {
            const jtok *name = peek_at(P, 1);
            bool is_end = false;
            for (size_t e = 0; ends && ends[e]; e++)
                if (tok_is(name, TK_NAME, ends[e])) is_end = true;
            if (is_end) break;
            nv_push(P, &v, parse_stmt(P), NULL);
        } else {
            perr(P, "unexpected token");
        }
    }
    body->body = v.v;
    body->n_body = v.n;
    P->depth--;
    return body;
}

jnode *jinja_parse_tokens(jarena *a, const jtok *toks, size_t n_toks) {
    parser P = {.a = a, .t = toks, .n = n_toks};
    return parse_body(&P, NULL, NULL, 0);
}
