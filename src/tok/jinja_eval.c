/* Jinja evaluator: expressions, statements, scopes, macros, and the public
 * parse / render entry points. Errors and limits unwind with longjmp to the
 * entry point, which frees the render's arena in one go. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tok/jinja_int.h"
#include "base/err.h"

#define MAX_EVAL_DEPTH 1000

enum { FLOW_NORMAL = 0, FLOW_BREAK, FLOW_CONTINUE };

struct ts_jinja {
    jarena a;
    jmp_buf jb;
    ts_status st;
    jnode *root;
};

_Noreturn void jx_fail(jctx *c, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ja_fail(c->a, TS_ERR_INVALID, c->line, "%s", msg);
}

void jx_step(jctx *c) {
    if (++c->steps > c->max_steps)
        ja_fail(c->a, TS_ERR_CAPACITY, c->line, "step limit of %llu reached (runaway loop?)",
                (unsigned long long)c->max_steps);
}

/* ---- scopes ---- */

static jv lookup(jctx *c, jscope *s, const char *name) {
    size_t n = strlen(name);
    for (; s; s = s->parent) {
        jv *v = jv_dict_get(&s->vars, name, n);
        if (v) return *v;
    }
    int id = jx_builtin_id(name, n);
    if (id) {
        jv f = {.t = JV_FUNC, .sub = (uint8_t)id};
        return f;
    }
    (void)c;
    return jv_undef(name);
}

static void scope_set(jctx *c, jscope *s, const char *name, jv v) {
    jv_dict_set(c, &s->vars, jv_cstr(name), v);
}

static jscope *new_scope(jctx *c, jscope *parent) {
    jscope *s = ja_alloc(c->a, sizeof *s);
    s->parent = parent;
    return s;
}

/* ---- attribute / item access ---- */
static _Noreturn void fail_undef(jctx *c, jv u) {
    if (u.u.s.p) jx_fail(c, "'%s' is undefined", u.u.s.p);
    jx_fail(c, "use of an undefined value");
}

jv jx_getattr(jctx *c, jv obj, const char *name, size_t n) {
    if (obj.t == JV_UNDEF) fail_undef(c, obj);
    if (obj.t == JV_DICT) {
        jv *v = jv_dict_get(obj.u.d, name, n);
        if (v) return *v;
    }
    return jv_undef(NULL);
}

static bool as_index(jv k, int64_t *i) {
    if (k.t == JV_INT) { *i = k.u.i; return true; }
    if (k.t == JV_BOOL) { *i = k.u.b; return true; }
    return false;
}

jv jx_getitem(jctx *c, jv obj, jv key) {
    if (obj.t == JV_UNDEF) fail_undef(c, obj);
    int64_t i;
    if (obj.t == JV_DICT) {
        jv *v = jv_dict_getv(obj.u.d, key);
        return v ? *v : jv_undef(NULL);
    }
    if (obj.t == JV_LIST && as_index(key, &i)) {
        int64_t n = (int64_t)obj.u.l->n;
        if (i < 0) i += n;
        return i >= 0 && i < n ? obj.u.l->v[i] : jv_undef(NULL);
    }
    if (obj.t == JV_STR && as_index(key, &i)) {
        int64_t n = (int64_t)utf8_len(obj.u.s.p, obj.u.s.n);
        if (i < 0) i += n;
        if (i < 0 || i >= n) return jv_undef(NULL);
        size_t b = utf8_offset(obj.u.s.p, obj.u.s.n, (size_t)i);
        size_t e = utf8_offset(obj.u.s.p, obj.u.s.n, (size_t)i + 1);
        return jv_str(obj.u.s.p + b, e - b);
    }
    if (key.t == JV_STR) return jx_getattr(c, obj, key.u.s.p, key.u.s.n);
    return jv_undef(NULL);
}

/* Python slice bounds for length n. */
static void slice_bounds(jctx *c, jv *parts, int64_t n, int64_t *start, int64_t *stop, int64_t *step) {
    int64_t v;
    *step = 1;
    if (parts[2].t != JV_NONE && parts[2].t != JV_UNDEF) {
        if (!as_index(parts[2], &v)) jx_fail(c, "slice indices must be integers");
        if (v == 0) jx_fail(c, "slice step cannot be zero");
        *step = v;
    }
    for (int k = 0; k < 2; k++) {
        int64_t *out = k ? stop : start;
        if (parts[k].t == JV_NONE || parts[k].t == JV_UNDEF) {
            *out = (*step > 0) == (k == 0) ? (*step > 0 ? 0 : n - 1) : (*step > 0 ? n : -1);
            if (*step < 0 && k == 1) *out = -1;
            if (*step < 0 && k == 0) *out = n - 1;
            continue;
        }
        if (!as_index(parts[k], &v)) jx_fail(c, "slice indices must be integers");
        if (v < 0) {
            v += n;
            if (v < 0) v = *step < 0 ? -1 : 0;
        } else if (v >= n) {
            v = *step < 0 ? n - 1 : n;
        }
        *out = v;
    }
}

static jv do_slice(jctx *c, jv obj, jv *parts) {
    if (obj.t == JV_UNDEF) fail_undef(c, obj);
    int64_t start, stop, step;
    if (obj.t == JV_LIST) {
        slice_bounds(c, parts, (int64_t)obj.u.l->n, &start, &stop, &step);
        jv r = jv_newlist(c, 0);
        r.u.l->kind = obj.u.l->kind;
        for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
            jv_list_push(c, r.u.l, obj.u.l->v[i]);
        return r;
    }
    if (obj.t == JV_STR) {
        size_t n = utf8_len(obj.u.s.p, obj.u.s.n);
        slice_bounds(c, parts, (int64_t)n, &start, &stop, &step);
        jsb b = {0};
        if (n == obj.u.s.n) {   /* ASCII: byte = code point */
            for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
                jsb_putc(c, &b, obj.u.s.p[i]);
        } else {
            size_t *off = ja_alloc(c->a, (n + 1) * sizeof *off), k = 0;
            for (size_t i = 0; i < obj.u.s.n; i++)
                if (((unsigned char)obj.u.s.p[i] & 0xC0) != 0x80) off[k++] = i;
            off[n] = obj.u.s.n;
            for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
                jsb_put(c, &b, obj.u.s.p + off[i], off[i + 1] - off[i]);
        }
        return jsb_take(&b);
    }
    return jv_undef(NULL);
}

/* ---- arithmetic ---- */
static jv arith(jctx *c, int op, jv a, jv b) {
    if (op == OP_CONCAT) {
        jsb s = {0};
        jv_write_str(c, &s, a);
        jv_write_str(c, &s, b);
        return jsb_take(&s);
    }
    if (a.t == JV_UNDEF) fail_undef(c, a);
    if (b.t == JV_UNDEF) fail_undef(c, b);
    if (jv_is_num(a) && jv_is_num(b)) {
        if (a.t != JV_FLOAT && b.t != JV_FLOAT) {
            int64_t x = a.t == JV_INT ? a.u.i : a.u.b, y = b.t == JV_INT ? b.u.i : b.u.b, r = 0;
            bool ovf = false;
            switch (op) {
            case OP_ADD: ovf = __builtin_add_overflow(x, y, &r); break;
            case OP_SUB: ovf = __builtin_sub_overflow(x, y, &r); break;
            case OP_MUL: ovf = __builtin_mul_overflow(x, y, &r); break;
            case OP_DIV:
                if (!y) jx_fail(c, "division by zero");
                return jv_float((double)x / (double)y);
            case OP_FLOORDIV: case OP_MOD:
                if (!y) jx_fail(c, "integer division or modulo by zero");
                if (x == INT64_MIN && y == -1) { ovf = true; break; }
                r = op == OP_FLOORDIV ? x / y : x % y;
                if (op == OP_FLOORDIV && (x % y != 0) && ((x < 0) != (y < 0))) r--;
                if (op == OP_MOD && r != 0 && ((r < 0) != (y < 0))) r += y;
                break;
            case OP_POW:
                if (y < 0) return jv_float(pow((double)x, (double)y));
                r = 1;
                for (int64_t k = 0; k < y && !ovf; k++) {
                    ovf = __builtin_mul_overflow(r, x, &r);
                    if (r == 0 || r == 1) break;
                    if (x == -1) { r = (y % 2) ? -1 : 1; break; }
                }
                break;
            default: break;
            }
            if (ovf) jx_fail(c, "integer overflow");
            return jv_int(r);
        }
        double x = jv_num(a), y = jv_num(b);
        switch (op) {
        case OP_ADD: return jv_float(x + y);
        case OP_SUB: return jv_float(x - y);
        case OP_MUL: return jv_float(x * y);
        case OP_DIV:
            if (y == 0) jx_fail(c, "float division by zero");
            return jv_float(x / y);
        case OP_FLOORDIV:
            if (y == 0) jx_fail(c, "float floor division by zero");
            return jv_float(floor(x / y));
        case OP_MOD: {
            if (y == 0) jx_fail(c, "float modulo by zero");
            double r = fmod(x, y);
            if (r != 0 && ((r < 0) != (y < 0))) r += y;
            return jv_float(r);
        }
        case OP_POW: return jv_float(pow(x, y));
        default: break;
        }
    }
    if (op == OP_ADD && a.t == JV_STR && b.t == JV_STR) {
        jsb s = {0};
        jsb_put(c, &s, a.u.s.p, a.u.s.n);
        jsb_put(c, &s, b.u.s.p, b.u.s.n);
        return jsb_take(&s);
    }
    if (op == OP_ADD && a.t == JV_LIST && b.t == JV_LIST) {
        jv r = jv_newlist(c, a.u.l->n + b.u.l->n);
        r.u.l->kind = a.u.l->kind;
        for (size_t i = 0; i < a.u.l->n; i++) jv_list_push(c, r.u.l, a.u.l->v[i]);
        for (size_t i = 0; i < b.u.l->n; i++) jv_list_push(c, r.u.l, b.u.l->v[i]);
        return r;
    }
    if (op == OP_MUL && (a.t == JV_STR || a.t == JV_LIST || b.t == JV_STR || b.t == JV_LIST)) {
        jv seq = (a.t == JV_STR || a.t == JV_LIST) ? a : b, cnt = seq.t == a.t ? b : a;
        int64_t k;
        if (as_index(cnt, &k)) {
            jv r = seq.t == JV_STR ? jv_str("", 0) : jv_newlist(c, 0);
            jsb s = {0};
            for (int64_t i = 0; i < k; i++) {
                jx_step(c);
                if (seq.t == JV_STR) jsb_put(c, &s, seq.u.s.p, seq.u.s.n);
                else for (size_t j = 0; j < seq.u.l->n; j++) jv_list_push(c, r.u.l, seq.u.l->v[j]);
            }
            return seq.t == JV_STR ? jsb_take(&s) : r;
        }
    }
    if (op == OP_MOD && a.t == JV_STR) {
        /* printf-style formatting: %s %d %i %r %f %% */
        jlist one = {.v = &b, .n = 1};
        jlist *args = b.t == JV_LIST && b.u.l->kind == JL_TUPLE ? b.u.l : &one;
        size_t ai = 0;
        jsb s = {0};
        for (size_t i = 0; i < a.u.s.n; i++) {
            char ch = a.u.s.p[i];
            if (ch != '%' || i + 1 >= a.u.s.n) { jsb_putc(c, &s, ch); continue; }
            char f = a.u.s.p[++i];
            if (f == '%') { jsb_putc(c, &s, '%'); continue; }
            if (ai >= args->n) jx_fail(c, "not enough arguments for format string");
            jv x = args->v[ai++];
            if (f == 's') jv_write_str(c, &s, x);
            else if (f == 'r') jv_write_repr(c, &s, x);
            else if ((f == 'd' || f == 'i') && jv_is_num(x)) jsb_printf(c, &s, "%lld", (long long)jv_num(x));
            else if (f == 'f' && jv_is_num(x)) jsb_printf(c, &s, "%f", jv_num(x));
            else jx_fail(c, "unsupported format '%%%c'", f);
        }
        if (ai < args->n) jx_fail(c, "not all arguments converted during string formatting");
        return jsb_take(&s);
    }
    static const char *sym[] = {"", "+", "-", "*", "/", "//", "%", "**"};
    jx_fail(c, "unsupported operand type(s) for %s: '%s' and '%s'", op <= OP_POW ? sym[op] : "?",
            jv_type_name(a), jv_type_name(b));
}

static bool contains(jctx *c, jv hay, jv x) {
    if (hay.t == JV_STR) {
        if (x.t != JV_STR) jx_fail(c, "'in <string>' requires string as left operand, not %s", jv_type_name(x));
        if (!x.u.s.n) return true;
        return memmem(hay.u.s.p, hay.u.s.n, x.u.s.p, x.u.s.n) != NULL;
    }
    if (hay.t == JV_LIST) {
        for (size_t i = 0; i < hay.u.l->n; i++)
            if (jv_eq(hay.u.l->v[i], x)) return true;
        return false;
    }
    if (hay.t == JV_DICT) return jv_dict_getv(hay.u.d, x) != NULL;
    if (hay.t == JV_UNDEF) return false;
    jx_fail(c, "argument of type '%s' is not iterable", jv_type_name(hay));
}

static bool compare(jctx *c, int op, jv a, jv b) {
    switch (op) {
    case OP_EQ: return jv_eq(a, b);
    case OP_NE: return !jv_eq(a, b);
    case OP_IN: return contains(c, b, a);
    case OP_NOTIN: return !contains(c, b, a);
    default: break;
    }
    if (a.t == JV_UNDEF) fail_undef(c, a);
    if (b.t == JV_UNDEF) fail_undef(c, b);
    int r = jv_cmp(c, a, b);
    return op == OP_LT ? r < 0 : op == OP_LE ? r <= 0 : op == OP_GT ? r > 0 : r >= 0;
}

/* ---- calls ---- */
static void eval_args(jctx *c, const jnode *n, jargs *a, const char *extra_kw, jv extra) {
    size_t n_kw = extra_kw ? 1 : 0;
    for (size_t i = 0; i < n->n_args; i++) n_kw += n->kw && n->kw[i] ? 1 : 0;
    a->pos = ja_alloc(c->a, (n->n_args + 1) * sizeof(jv));
    a->kwv = ja_alloc(c->a, (n_kw + 1) * sizeof(jv));
    a->kw = ja_alloc(c->a, (n_kw + 1) * sizeof(char *));
    a->n_pos = a->n_kw = 0;
    for (size_t i = 0; i < n->n_args; i++) {
        jv v = jx_eval(c, n->args[i]);
        if (n->kw && n->kw[i]) {
            a->kw[a->n_kw] = n->kw[i];
            a->kwv[a->n_kw++] = v;
        } else {
            a->pos[a->n_pos++] = v;
        }
    }
    if (extra_kw) {
        a->kw[a->n_kw] = extra_kw;
        a->kwv[a->n_kw++] = extra;
    }
}

static jv call_body(jctx *c, const jnode *def, jscope *closure, jargs *a, const char *what) {
    if (++c->depth > c->max_depth)
        ja_fail(c->a, TS_ERR_CAPACITY, c->line, "%s calls nested deeper than %d", what, c->max_depth);
    jscope *s = new_scope(c, closure);
    if (a->n_pos > def->n_args)
        jx_fail(c, "%s takes at most %zu argument(s), got %zu", what, def->n_args, a->n_pos);
    for (size_t k = 0; k < a->n_kw; k++) {
        bool ok = !strcmp(a->kw[k], "caller");
        for (size_t i = 0; i < def->n_args && !ok; i++) ok = !strcmp(def->kw[i], a->kw[k]);
        if (!ok) jx_fail(c, "%s got an unexpected keyword argument '%s'", what, a->kw[k]);
        if (!strcmp(a->kw[k], "caller")) scope_set(c, s, "caller", a->kwv[k]);
    }
    for (size_t i = 0; i < def->n_args; i++) {
        jv v = jv_undef(def->kw[i]);
        if (i < a->n_pos) {
            v = a->pos[i];
        } else {
            bool found = false;
            for (size_t k = 0; k < a->n_kw; k++)
                if (!strcmp(a->kw[k], def->kw[i])) { v = a->kwv[k]; found = true; }
            if (!found && def->args[i]) v = jx_eval(c, def->args[i]);
        }
        scope_set(c, s, def->kw[i], v);
    }
    jsb *saved = c->out, buf = {0};
    c->out = &buf;
    int flow = 0;
    jx_exec_in(c, def->body, def->n_body, s, &flow);
    c->out = saved;
    c->depth--;
    return jsb_take(&buf);
}

jv jx_call_value(jctx *c, jv fn, jv *args, size_t n_args, const char **kw, jv *kwv, size_t n_kw) {
    jargs a = {args, n_args, kw, kwv, n_kw};
    if (fn.t == JV_MACRO) return call_body(c, fn.u.m.node, fn.u.m.scope, &a, "macro");
    if (fn.t == JV_FUNC && fn.sub == JF_CALLER) return call_body(c, fn.u.m.node, fn.u.m.scope, &a, "caller");
    if (fn.t == JV_FUNC) return jx_builtin(c, fn.sub, &a);
    if (fn.t == JV_UNDEF) fail_undef(c, fn);
    jx_fail(c, "'%s' object is not callable", jv_type_name(fn));
}

static jv eval_call(jctx *c, const jnode *n, const char *extra_kw, jv extra) {
    const jnode *f = n->a;
    jargs a;
    if (f->k == N_ATTR) {
        jv obj = jx_eval(c, f->a);
        eval_args(c, n, &a, extra_kw, extra);
        c->line = n->line;
        jv out;
        if (jx_method(c, obj, f->name, &a, &out)) return out;
        jv fn = jx_getattr(c, obj, f->name, strlen(f->name));
        if (fn.t == JV_UNDEF)
            jx_fail(c, "'%s' object has no attribute '%s'", jv_type_name(obj), f->name);
        return jx_call_value(c, fn, a.pos, a.n_pos, a.kw, a.kwv, a.n_kw);
    }
    jv fn = jx_eval(c, f);
    eval_args(c, n, &a, extra_kw, extra);
    c->line = n->line;
    return jx_call_value(c, fn, a.pos, a.n_pos, a.kw, a.kwv, a.n_kw);
}

/* ---- expressions ---- */
static jscope *scope_of(jctx *c) { return c->scope; }
static void set_scope(jctx *c, jscope *s) { c->scope = s; }

jv jx_eval(jctx *c, const jnode *n) {
    jx_step(c);
    c->line = n->line;
    if (++c->edepth > MAX_EVAL_DEPTH) jx_fail(c, "expression nested too deeply");
    jv r, x, y;
    switch (n->k) {
    case N_LIT: r = n->lit; break;
    case N_NAME: r = lookup(c, scope_of(c), n->name); break;
    case N_LIST: case N_TUPLE:
        r = jv_newlist(c, n->n_args);
        r.u.l->kind = n->k == N_TUPLE ? JL_TUPLE : JL_LIST;
        for (size_t i = 0; i < n->n_args; i++) jv_list_push(c, r.u.l, jx_eval(c, n->args[i]));
        break;
    case N_DICT:
        r = jv_newdict(c, JD_PLAIN);
        for (size_t i = 0; i + 1 < n->n_args; i += 2) {
            x = jx_eval(c, n->args[i]);
            y = jx_eval(c, n->args[i + 1]);
            jv_dict_set(c, r.u.d, x, y);
        }
        break;
    case N_ATTR:
        x = jx_eval(c, n->a);
        c->line = n->line;
        r = jx_getattr(c, x, n->name, strlen(n->name));
        break;
    case N_ITEM:
        x = jx_eval(c, n->a);
        y = jx_eval(c, n->b);
        c->line = n->line;
        r = jx_getitem(c, x, y);
        break;
    case N_SLICE: {
        jv parts[3];
        x = jx_eval(c, n->a);
        for (int k = 0; k < 3; k++) parts[k] = n->args[k] ? jx_eval(c, n->args[k]) : jv_none();
        c->line = n->line;
        r = do_slice(c, x, parts);
        break;
    }
    case N_CALL: r = eval_call(c, n, NULL, jv_none()); break;
    case N_FILTER: {
        jargs a;
        x = n->a ? jx_eval(c, n->a) : jv_undef(NULL);
        eval_args(c, n, &a, NULL, jv_none());
        c->line = n->line;
        r = jx_filter(c, n->name, x, &a);
        break;
    }
    case N_TEST: {
        jargs a;
        x = jx_eval(c, n->a);
        eval_args(c, n, &a, NULL, jv_none());
        c->line = n->line;
        bool t = jx_test(c, n->name, x, &a);
        r = jv_bool(n->op ? !t : t);
        break;
    }
    case N_BIN:
        x = jx_eval(c, n->a);
        y = jx_eval(c, n->b);
        c->line = n->line;
        r = arith(c, n->op, x, y);
        break;
    case N_NEG: case N_POS:
        x = jx_eval(c, n->a);
        c->line = n->line;
        if (x.t == JV_BOOL) x = jv_int(x.u.b);
        if (x.t == JV_INT) {
            if (n->k == N_NEG && x.u.i == INT64_MIN) jx_fail(c, "integer overflow");
            r = n->k == N_NEG ? jv_int(-x.u.i) : x;
        } else if (x.t == JV_FLOAT) {
            r = n->k == N_NEG ? jv_float(-x.u.f) : x;
        } else {
            if (x.t == JV_UNDEF) fail_undef(c, x);
            jx_fail(c, "bad operand type for unary %s: '%s'", n->k == N_NEG ? "-" : "+", jv_type_name(x));
        }
        break;
    case N_AND:
        x = jx_eval(c, n->a);
        r = jv_truthy(x) ? jx_eval(c, n->b) : x;
        break;
    case N_OR:
        x = jx_eval(c, n->a);
        r = jv_truthy(x) ? x : jx_eval(c, n->b);
        break;
    case N_NOT: r = jv_bool(!jv_truthy(jx_eval(c, n->a))); break;
    case N_COND:
        if (jv_truthy(jx_eval(c, n->b))) r = jx_eval(c, n->a);
        else r = n->c ? jx_eval(c, n->c) : jv_undef(NULL);
        break;
    case N_CMP: {
        x = jx_eval(c, n->args[0]);
        r = jv_bool(true);
        for (size_t i = 1; i < n->n_args; i++) {
            y = jx_eval(c, n->args[i]);
            c->line = n->line;
            if (!compare(c, n->ops[i - 1], x, y)) { r = jv_bool(false); break; }
            x = y;
        }
        break;
    }
    default: jx_fail(c, "internal: statement used as expression");
    }
    c->edepth--;
    return r;
}

/* ---- statements ---- */

static void assign(jctx *c, jscope *s, const jnode *target, jv v) {
    if (target->k == N_NAME) {
        scope_set(c, s, target->name, v);
    } else if (target->k == N_ATTR) {
        jv ns = lookup(c, s, target->a->name);
        if (ns.t != JV_DICT || ns.u.d->kind != JD_NAMESPACE)
            jx_fail(c, "cannot assign attribute on non-namespace object '%s'", target->a->name);
        jv_dict_set(c, ns.u.d, jv_cstr(target->name), v);
    } else {   /* tuple unpacking */
        jlist *l = NULL;
        if (v.t == JV_LIST) l = v.u.l;
        else if (v.t == JV_STR) {
            jv chars = jx_filter(c, "list", v, &(jargs){0});
            l = chars.u.l;
        } else {
            jx_fail(c, "cannot unpack non-iterable %s object", jv_type_name(v));
        }
        if (l->n != target->n_args)
            jx_fail(c, "cannot unpack %zu values into %zu variables", l->n, target->n_args);
        for (size_t i = 0; i < l->n; i++) assign(c, s, target->args[i], l->v[i]);
    }
}

/* Items a for loop walks: lists, dict keys, string characters. */
static jlist *iter_items(jctx *c, jv v) {
    if (v.t == JV_LIST) return v.u.l;
    if (v.t == JV_UNDEF) return ja_alloc(c->a, sizeof(jlist));
    if (v.t == JV_DICT && v.u.d->kind == JD_PLAIN) {
        jv l = jv_newlist(c, v.u.d->n);
        for (size_t i = 0; i < v.u.d->n; i++) jv_list_push(c, l.u.l, v.u.d->k[i]);
        return l.u.l;
    }
    if (v.t == JV_STR) return jx_filter(c, "list", v, &(jargs){0}).u.l;
    jx_fail(c, "'%s' object is not iterable", jv_type_name(v));
}

static void exec_for(jctx *c, const jnode *n, int *flow) {
    jscope *outer = scope_of(c);
    jlist *items = iter_items(c, jx_eval(c, n->a));
    jscope *it = new_scope(c, outer);
    if (n->b) {   /* inline filter: applied before loop.length is known */
        jv kept = jv_newlist(c, items->n);
        for (size_t i = 0; i < items->n; i++) {
            it->vars.n = 0;
            set_scope(c, it);
            assign(c, it, n->target, items->v[i]);
            if (jv_truthy(jx_eval(c, n->b))) jv_list_push(c, kept.u.l, items->v[i]);
        }
        items = kept.u.l;
        set_scope(c, outer);
    }
    if (!items->n) {
        jx_exec_in(c, n->els, n->n_els, outer, flow);
        return;
    }
    size_t len = items->n;
    jv loop = jv_newdict(c, JD_LOOP);
    static const char *keys[] = {"index", "index0", "revindex", "revindex0", "first", "last",
                                 "length", "depth", "depth0", "previtem", "nextitem"};
    for (size_t k = 0; k < 11; k++) jv_dict_set(c, loop.u.d, jv_cstr(keys[k]), jv_none());
    for (size_t i = 0; i < len; i++) {
        jx_step(c);
        jv *lv = loop.u.d->v;
        lv[0] = jv_int((int64_t)i + 1);
        lv[1] = jv_int((int64_t)i);
        lv[2] = jv_int((int64_t)(len - i));
        lv[3] = jv_int((int64_t)(len - i - 1));
        lv[4] = jv_bool(i == 0);
        lv[5] = jv_bool(i + 1 == len);
        lv[6] = jv_int((int64_t)len);
        lv[7] = jv_int(1);
        lv[8] = jv_int(0);
        lv[9] = i ? items->v[i - 1] : jv_undef("previtem");
        lv[10] = i + 1 < len ? items->v[i + 1] : jv_undef("nextitem");
        it->vars.n = 0;   /* a fresh scope per iteration, as Jinja2 */
        scope_set(c, it, "loop", loop);
        assign(c, it, n->target, items->v[i]);
        int f = FLOW_NORMAL;
        jx_exec_in(c, n->body, n->n_body, it, &f);
        if (f == FLOW_BREAK) break;
    }
    set_scope(c, outer);
    *flow = FLOW_NORMAL;
}

static void exec_stmt(jctx *c, jnode *n, int *flow) {
    jx_step(c);
    c->line = n->line;
    jscope *s = scope_of(c);
    switch (n->k) {
    case S_DATA: jsb_put(c, c->out, n->lit.u.s.p, n->lit.u.s.n); break;
    case S_PRINT: {
        jv v = jx_eval(c, n->a);
        jv_write_str(c, c->out, v);
        break;
    }
    case S_IF:
        if (jv_truthy(jx_eval(c, n->a))) jx_exec_list(c, n->body, n->n_body, flow);
        else jx_exec_list(c, n->els, n->n_els, flow);
        break;
    case S_FOR: exec_for(c, n, flow); break;
    case S_SET: assign(c, s, n->target, jx_eval(c, n->a)); break;
    case S_SETBLOCK: case S_FILTERBLOCK: {
        jsb *saved = c->out, buf = {0};
        c->out = &buf;
        jx_exec_list(c, n->body, n->n_body, flow);
        c->out = saved;
        jv text = jsb_take(&buf);
        if (n->k == S_SETBLOCK) {
            assign(c, s, n->target, text);
        } else {
            /* apply the chain innermost first: collect it root-last */
            const jnode *chain[64];
            size_t k = 0;
            for (const jnode *f = n->a; f && k < 64; f = f->a) chain[k++] = f;
            while (k--) {
                jargs a;
                eval_args(c, chain[k], &a, NULL, jv_none());
                text = jx_filter(c, chain[k]->name, text, &a);
            }
            jv_write_str(c, c->out, text);
        }
        break;
    }
    case S_MACRO: {
        jv m = {.t = JV_MACRO};
        m.u.m.node = n;
        m.u.m.scope = s;
        scope_set(c, s, n->name, m);
        break;
    }
    case S_CALLBLOCK: {
        jv caller = {.t = JV_FUNC, .sub = JF_CALLER};
        caller.u.m.node = n;
        caller.u.m.scope = s;
        jv r = eval_call(c, n->a, "caller", caller);
        jv_write_str(c, c->out, r);
        break;
    }
    case S_BREAK: *flow = FLOW_BREAK; break;
    case S_CONTINUE: *flow = FLOW_CONTINUE; break;
    case S_BODY: jx_exec_list(c, n->body, n->n_body, flow); break;
    default: jx_fail(c, "internal: expression used as statement");
    }
}

void jx_exec_list(jctx *c, jnode *const *body, size_t n, int *flow) {
    for (size_t i = 0; i < n && *flow == FLOW_NORMAL; i++) exec_stmt(c, body[i], flow);
}

void jx_exec_in(jctx *c, jnode *const *body, size_t n, jscope *s, int *flow) {
    jscope *saved = scope_of(c);
    set_scope(c, s);
    jx_exec_list(c, body, n, flow);
    set_scope(c, saved);
}

/* ---- public API ---- */
ts_status ts_jinja_parse(const char *src, size_t len, ts_jinja **out, ts_err *err) {
    if (!out || (!src && len)) return ts_fail(err, TS_ERR_INVALID, "ts_jinja_parse: NULL argument");
    *out = NULL;
    ts_jinja *t = calloc(1, sizeof *t);
    if (!t) return ts_fail(err, TS_ERR_NOMEM, "template: out of memory");
    t->a.cap = (size_t)64 << 20;
    if (len < t->a.cap / 64) t->a.cap += len * 64;
    t->a.jb = &t->jb;
    t->a.err = err;
    t->a.st = &t->st;
    if (setjmp(t->jb)) {
        ts_status st = t->st;
        ts_jinja_free(t);
        return st;
    }
    /* newlines normalised to \n; one trailing newline dropped (keep_trailing_newline=False) */
    char *s = ja_alloc(&t->a, len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            s[n++] = src[i];
        }
    }
    if (n && s[n - 1] == '\n') n--;
    s[n] = 0;
    jtok *toks;
    size_t n_toks;
    jinja_lex(&t->a, s, n, &toks, &n_toks);
    t->root = jinja_parse_tokens(&t->a, toks, n_toks);
    t->a.err = NULL;
    *out = t;
    return TS_OK;
}

void ts_jinja_free(ts_jinja *t) {
    if (!t) return;
    ja_free(&t->a);
    free(t);
}

typedef struct render_state {
    jarena a;
    jmp_buf jb;
    ts_status st;
    jctx c;
    jsb out;
} render_state;

ts_status ts_jinja_render(const ts_jinja *t, const json_t *vars, const ts_jinja_limits *lim,
                          ts_buf *out, ts_err *err) {
    if (!t || !out) return ts_fail(err, TS_ERR_INVALID, "ts_jinja_render: NULL argument");
    if (vars && !json_is_object(vars))
        return ts_fail(err, TS_ERR_INVALID, "template: variables must be a JSON object");
    render_state *r = calloc(1, sizeof *r);
    if (!r) return ts_fail(err, TS_ERR_NOMEM, "template: out of memory");
    ts_jinja_limits L = lim ? *lim : (ts_jinja_limits){0};
    r->a.cap = L.max_memory ? L.max_memory : (size_t)256 << 20;
    r->a.jb = &r->jb;
    r->a.err = err;
    r->a.st = &r->st;
    jctx *c = &r->c;
    c->a = &r->a;
    c->max_steps = L.max_steps ? L.max_steps : 20000000;
    c->max_output = L.max_output ? L.max_output : (size_t)16 << 20;
    c->max_depth = L.max_depth > 0 ? L.max_depth : 200;
    c->out = &r->out;
    if (setjmp(r->jb)) {
        ts_status st = r->st;
        ja_free(&r->a);
        free(r);
        return st;
    }
    c->root = new_scope(c, NULL);
    if (vars) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)vars, k, v) scope_set(c, c->root, k, jv_from_json(c, v));
    }
    c->scope = c->root;
    int flow = FLOW_NORMAL;
    jx_exec_list(c, t->root->body, t->root->n_body, &flow);
    ts_status st = ts_buf_append(out, r->out.p ? r->out.p : "", r->out.n);
    if (st != TS_OK) ts_fail(err, st, "template: out of memory for the output");
    ja_free(&r->a);
    free(r);
    return st;
}
