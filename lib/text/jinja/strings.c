/* Jinja interpreter: Python's str as templates use it. The methods of str
 * that jinja2's immutable sandbox allows, one small function each, found by
 * name in the table at the end of this file; the helpers filters share with
 * them (case mapping, strip, split, replace, padding); and the two
 * formatting languages, "%" (jj_str_mod) and str.format. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_int.h"


/* ---------------------------------------------------------------- string helpers */
size_t *jj_cp_offsets(jctx *c, const jstr *s) {
    size_t *off = malloc((s->ncp + 1) * sizeof *off);
    if (!off) {
        jj_fail(c, AL_ENOMEM, "out of memory");
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < s->len; i++)
        if (((unsigned char)s->s[i] & 0xc0) != 0x80) off[k++] = i;
    off[k] = s->len;
    return off;
}

int jj_put_cp(jctx *c, jbuf *b, uint32_t cp) {
    char e[4];
    return jj_buf_put(c, b, e, jj_u8_enc(e, cp));
}

/* One character's full case mapping (al_uc_upper, ...). */
static int put_mapped(jctx *c, jbuf *b, int (*map)(uint32_t, uint32_t *), uint32_t cp) {
    uint32_t m[AL_UC_MAX_CASE];
    int n = map(cp, m), rc = AL_OK;
    for (int i = 0; i < n && !rc; i++) rc = jj_put_cp(c, b, m[i]);
    return rc;
}

/* Python's lower_ucs4: the character at s[i] of the string s[0..n)
 * lowercased, a capital sigma by its Final_Sigma context. */
static int put_lower(jctx *c, jbuf *b, const char *s, size_t n, size_t i, uint32_t cp) {
    if (cp == 0x3A3) return jj_put_cp(c, b, al_uc_final_sigma(s, n, i) ? 0x3C2 : 0x3C3);
    return put_mapped(c, b, al_uc_lower, cp);
}

int jj_case_into(jctx *c, jbuf *b, const char *s, size_t n, int mode) {
    int rc = AL_OK, prev_cased = 0;
    for (size_t i = 0; i < n && !rc;) {
        uint32_t cp = 0;
        size_t k = jj_u8_dec(s + i, n - i, &cp);
        switch (mode) {
        case JJ_CASE_UPPER: rc = put_mapped(c, b, al_uc_upper, cp); break;
        case JJ_CASE_LOWER: rc = put_lower(c, b, s, n, i, cp); break;
        case JJ_CASE_FOLD: rc = put_mapped(c, b, al_uc_fold, cp); break;
        case JJ_CASE_CAPITALIZE: rc = i == 0 ? put_mapped(c, b, al_uc_title, cp) : put_lower(c, b, s, n, i, cp); break;
        case JJ_CASE_SWAP:
            rc = al_uc_is_upper(cp)   ? put_lower(c, b, s, n, i, cp)
                 : al_uc_is_lower(cp) ? put_mapped(c, b, al_uc_upper, cp)
                                      : jj_put_cp(c, b, cp);
            break;
        case JJ_CASE_TITLE:
            rc = prev_cased ? put_lower(c, b, s, n, i, cp) : put_mapped(c, b, al_uc_title, cp);
            prev_cased = al_uc_is_cased(cp);
            break;
        }
        i += k;
    }
    return rc;
}

int jj_map_case(jctx *c, const char *s, size_t n, int mode, jv *out) {
    jbuf b = {0};
    int rc = jj_case_into(c, &b, s, n, mode);
    if (rc) {
        jj_buf_free(&b);
        return rc;
    }
    return jj_str_from_buf(c, &b, out);
}

static int cp_in(uint32_t cp, const char *set, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t x = 0;
        i += jj_u8_dec(set + i, n - i, &x);
        if (x == cp) return 1;
    }
    return 0;
}

/* Python str.strip/lstrip/rstrip; chars NULL = whitespace */
static void strip_range(const char *s, size_t n, const char *chars, size_t cn, int left, int right, size_t *from, size_t *to) {
    size_t a = 0, b = n;
    if (left) {
        while (a < b) {
            uint32_t cp = 0;
            size_t k = jj_u8_dec(s + a, b - a, &cp);
            if (chars ? !cp_in(cp, chars, cn) : !al_uc_is_space(cp)) break;
            a += k;
        }
    }
    if (right) {
        while (b > a) {
            size_t st = b - 1;
            while (st > a && ((unsigned char)s[st] & 0xc0) == 0x80) st--;
            uint32_t cp = 0;
            jj_u8_dec(s + st, b - st, &cp);
            if (chars ? !cp_in(cp, chars, cn) : !al_uc_is_space(cp)) break;
            b = st;
        }
    }
    *from = a;
    *to = b;
}

int jj_strip(jctx *c, const jstr *s, jv chars, int left, int right, jv *out) {
    const char *cs = NULL;
    size_t cn = 0;
    if (!jj_missing(chars) && chars.k != JV_NONE) {
        if (chars.k != JV_STR) return jj_fail(c, AL_EFORMAT, "strip arg must be None or str");
        cs = jv_str(chars)->s;
        cn = jv_str(chars)->len;
    }
    size_t a = 0, b = 0;
    strip_range(s->s, s->len, cs, cn, left, right, &a, &b);
    return jj_str_new(c, s->s + a, b - a, out);
}

ptrdiff_t jj_find_sub(const char *h, size_t from, size_t to, const char *n, size_t nn, int rev) {
    if (to < from || to - from < nn) return -1;
    if (!rev) {
        for (size_t i = from; i + nn <= to; i++)
            if (memcmp(h + i, n, nn) == 0) return (ptrdiff_t)i;
    } else {
        for (size_t i = to - nn + 1; i-- > from;)
            if (memcmp(h + i, n, nn) == 0) return (ptrdiff_t)i;
    }
    return -1;
}

static size_t cp_index_of(const char *s, size_t byte) { return jj_u8_count(s, byte); }

/* optional start/end (codepoint, slice semantics) -> byte range */
static int sub_range(jctx *c, const jstr *s, jv start, jv end, size_t *from, size_t *to) {
    int64_t len = (int64_t)s->ncp, a = 0, b = len;
    if (!jj_missing(start) && start.k != JV_NONE) {
        int rc = jj_want_int(c, start, &a);
        if (rc) return rc;
        if (a < 0) a += len;
        if (a < 0) a = 0;
    }
    if (!jj_missing(end) && end.k != JV_NONE) {
        int rc = jj_want_int(c, end, &b);
        if (rc) return rc;
        if (b < 0) b += len;
        if (b < 0) b = 0;
    }
    if (a > len) {
        *from = s->len + 1; /* empty and past the end: nothing matches, not even "" */
        *to = s->len;
        return AL_OK;
    }
    if (b > len) b = len;
    size_t *off = jj_cp_offsets(c, s);
    if (!off) return AL_ENOMEM;
    *from = off[a];
    *to = b >= a ? off[b] : off[a];
    free(off);
    return AL_OK;
}

static int split_impl(jctx *c, const jstr *s, jv sepv, int64_t maxsplit, int rev, jv *out) {
    int rc = jj_seq_new(c, JV_LIST, 0, out);
    if (rc) return rc;
    const char *p = s->s;
    size_t n = s->len;
    if (jj_missing(sepv) || sepv.k == JV_NONE) {
        if (!rev) {
            size_t i = 0;
            int64_t splits = 0;
            for (;;) {
                while (i < n) { /* skip whitespace */
                    uint32_t cp = 0;
                    size_t k = jj_u8_dec(p + i, n - i, &cp);
                    if (!al_uc_is_space(cp)) break;
                    i += k;
                }
                if (i >= n) break;
                if (maxsplit >= 0 && splits >= maxsplit) {
                    jv w = {0};
                    if ((rc = jj_str_new(c, p + i, n - i, &w)) || (rc = jj_seq_push(c, jv_seq(*out), w))) goto fail;
                    break;
                }
                size_t st = i;
                while (i < n) {
                    uint32_t cp = 0;
                    size_t k = jj_u8_dec(p + i, n - i, &cp);
                    if (al_uc_is_space(cp)) break;
                    i += k;
                }
                jv w = {0};
                if ((rc = jj_str_new(c, p + st, i - st, &w)) || (rc = jj_seq_push(c, jv_seq(*out), w))) goto fail;
                splits++;
            }
            return AL_OK;
        }
        /* rsplit on whitespace: collect from the right, then reverse */
        size_t i = n;
        int64_t splits = 0;
        for (;;) {
            while (i > 0) {
                size_t st = i - 1;
                while (st > 0 && ((unsigned char)p[st] & 0xc0) == 0x80) st--;
                uint32_t cp = 0;
                jj_u8_dec(p + st, i - st, &cp);
                if (!al_uc_is_space(cp)) break;
                i = st;
            }
            if (i == 0) break;
            if (maxsplit >= 0 && splits >= maxsplit) {
                jv w = {0};
                if ((rc = jj_str_new(c, p, i, &w)) || (rc = jj_seq_push(c, jv_seq(*out), w))) goto fail;
                break;
            }
            size_t end = i;
            while (i > 0) {
                size_t st = i - 1;
                while (st > 0 && ((unsigned char)p[st] & 0xc0) == 0x80) st--;
                uint32_t cp = 0;
                jj_u8_dec(p + st, i - st, &cp);
                if (al_uc_is_space(cp)) break;
                i = st;
            }
            jv w = {0};
            if ((rc = jj_str_new(c, p + i, end - i, &w)) || (rc = jj_seq_push(c, jv_seq(*out), w))) goto fail;
            splits++;
        }
    } else {
        if (sepv.k != JV_STR) {
            rc = jj_fail(c, AL_EFORMAT, "must be str or None, not %s", jj_type_name(sepv));
            goto fail;
        }
        const jstr *sep = jv_str(sepv);
        if (sep->len == 0) {
            rc = jj_fail(c, AL_EFORMAT, "empty separator");
            goto fail;
        }
        int64_t splits = 0;
        if (!rev) {
            size_t i = 0;
            for (;;) {
                ptrdiff_t f = (maxsplit >= 0 && splits >= maxsplit) ? -1 : jj_find_sub(p, i, n, sep->s, sep->len, 0);
                size_t e = f < 0 ? n : (size_t)f;
                jv w = {0};
                if ((rc = jj_str_new(c, p + i, e - i, &w)) || (rc = jj_seq_push(c, jv_seq(*out), w))) goto fail;
                if (f < 0) break;
                i = e + sep->len;
                splits++;
            }
            return AL_OK;
        }
        size_t j = n;
        for (;;) {
            ptrdiff_t f = (maxsplit >= 0 && splits >= maxsplit) ? -1 : jj_find_sub(p, 0, j, sep->s, sep->len, 1);
            size_t st = f < 0 ? 0 : (size_t)f + sep->len;
            jv w = {0};
            if ((rc = jj_str_new(c, p + st, j - st, &w)) || (rc = jj_seq_push(c, jv_seq(*out), w))) goto fail;
            if (f < 0) break;
            j = (size_t)f;
            splits++;
        }
    }
    if (rev) { /* reverse in place */
        jseq *q = jv_seq(*out);
        for (size_t i = 0; i < q->n / 2; i++) {
            jv t = q->v[i];
            q->v[i] = q->v[q->n - 1 - i];
            q->v[q->n - 1 - i] = t;
        }
    }
    return AL_OK;
fail:
    jj_decref(c, *out);
    return rc;
}

int jj_splitlines(jctx *c, const jstr *s, int keepends, jv *out) {
    int rc = jj_seq_new(c, JV_LIST, 0, out);
    if (rc) return rc;
    const char *p = s->s;
    size_t n = s->len, i = 0, st = 0;
    while (i < n) {
        uint32_t cp = 0;
        size_t k = jj_u8_dec(p + i, n - i, &cp);
        if (jj_ulinebreak(cp)) {
            size_t eol = i + k;
            if (cp == '\r' && eol < n && p[eol] == '\n') eol++;
            jv w = {0};
            if ((rc = jj_str_new(c, p + st, (keepends ? eol : i) - st, &w)) || (rc = jj_seq_push(c, jv_seq(*out), w))) {
                jj_decref(c, *out);
                return rc;
            }
            i = st = eol;
            continue;
        }
        i += k;
    }
    if (st < n) {
        jv w = {0};
        if ((rc = jj_str_new(c, p + st, n - st, &w)) || (rc = jj_seq_push(c, jv_seq(*out), w))) {
            jj_decref(c, *out);
            return rc;
        }
    }
    return AL_OK;
}

int jj_replace(jctx *c, const jstr *s, const jstr *old, const jstr *rep, int64_t count, jv *out) {
    jbuf b = {0};
    int rc = AL_OK;
    int64_t done = 0;
    if (old->len == 0) {
        size_t i = 0;
        while (!rc) {
            if (count < 0 || done < count) {
                rc = jj_buf_put(c, &b, rep->s, rep->len);
                done++;
            }
            if (i >= s->len || rc) break;
            uint32_t cp = 0;
            size_t k = jj_u8_dec(s->s + i, s->len - i, &cp);
            rc = jj_buf_put(c, &b, s->s + i, k);
            i += k;
        }
    } else {
        size_t i = 0;
        while (!rc) {
            ptrdiff_t f = (count >= 0 && done >= count) ? -1 : jj_find_sub(s->s, i, s->len, old->s, old->len, 0);
            if (f < 0) {
                rc = jj_buf_put(c, &b, s->s + i, s->len - i);
                break;
            }
            if (!(rc = jj_buf_put(c, &b, s->s + i, (size_t)f - i))) rc = jj_buf_put(c, &b, rep->s, rep->len);
            i = (size_t)f + old->len;
            done++;
        }
    }
    if (rc) {
        jj_buf_free(&b);
        return rc;
    }
    return jj_str_from_buf(c, &b, out);
}

int jj_pad(jctx *c, const jstr *s, int64_t width, jv fillv, int mode /* 0 center 1 ljust 2 rjust */, jv *out) {
    const char *fill = " ";
    size_t fl = 1;
    if (!jj_missing(fillv)) {
        if (fillv.k != JV_STR || jv_str(fillv)->ncp != 1)
            return jj_fail(c, AL_EFORMAT, "The fill character must be exactly one character long");
        fill = jv_str(fillv)->s;
        fl = jv_str(fillv)->len;
    }
    if (width <= (int64_t)s->ncp) {
        jj_incref((jv){.k = JV_STR, .u.o = (jo *)&s->h});
        out->k = JV_STR;
        out->u.o = (jo *)&s->h;
        return AL_OK;
    }
    if (width > (int64_t)JJ_OUT_MAX) return jj_fail(c, AL_ERANGE, "string too long");
    int64_t marg = width - (int64_t)s->ncp, left;
    if (mode == 0) left = marg / 2 + (marg & width & 1);
    else if (mode == 1) left = 0;
    else left = marg;
    jbuf b = {0};
    int rc = AL_OK;
    for (int64_t i = 0; i < left && !rc; i++) rc = jj_buf_put(c, &b, fill, fl);
    if (!rc) rc = jj_buf_put(c, &b, s->s, s->len);
    for (int64_t i = 0; i < marg - left && !rc; i++) rc = jj_buf_put(c, &b, fill, fl);
    if (rc) {
        jj_buf_free(&b);
        return rc;
    }
    return jj_str_from_buf(c, &b, out);
}


/* ---------------------------------------------------------------- printf-style formatting */
static int fmt_pad(jctx *c, jbuf *b, const char *s, size_t n, size_t ncp, int64_t width, int left, char fill) {
    int rc = AL_OK;
    int64_t pad = width > (int64_t)ncp ? width - (int64_t)ncp : 0;
    if (pad > (int64_t)JJ_OUT_MAX) return jj_fail(c, AL_ERANGE, "string too long");
    if (!left)
        for (int64_t i = 0; i < pad && !rc; i++) rc = jj_buf_putc(c, b, fill);
    if (!rc) rc = jj_buf_put(c, b, s, n);
    if (left)
        for (int64_t i = 0; i < pad && !rc; i++) rc = jj_buf_putc(c, b, ' ');
    return rc;
}

static int num_of(jctx *c, jv v, int want_int, double *f, int64_t *i) {
    if (v.k == JV_INT || v.k == JV_BOOL) {
        *i = v.u.i;
        *f = (double)v.u.i;
        return AL_OK;
    }
    if (v.k == JV_FLOAT) {
        *f = v.u.f;
        if (want_int) {
            if (!isfinite(v.u.f)) return jj_fail(c, AL_EFORMAT, "cannot convert float to integer");
            if (v.u.f >= 9.2233720368547758e18 || v.u.f < -9.2233720368547758e18) return jj_fail(c, AL_ERANGE, "integer too large");
            *i = (int64_t)v.u.f;
        }
        return AL_OK;
    }
    return jj_fail(c, AL_EFORMAT, "%%%c format: a real number is required, not %s", want_int ? 'd' : 'f', jj_type_name(v));
}

/* One "%" conversion of val (flags, width and precision in sp) onto b. */
typedef struct pct_spec {
    int left, zero, plus, space, alt;
    int64_t width, prec;
    char type;
} pct_spec;

static int pct_convert(jctx *c, jbuf *b, const pct_spec *sp, jv val) {
    int left = sp->left, zero = sp->zero, plus = sp->plus, space = sp->space, alt = sp->alt;
    int64_t width = sp->width, prec = sp->prec;
    char type = sp->type;
    int rc = AL_OK;
    char spec[32], tmp[512];
    switch (type) {
    case 's': case 'r': case 'a': {
        jbuf sb = {0};
        rc = type == 's' ? jj_to_str(c, &sb, val) : type == 'a' ? jj_ascii_repr(c, &sb, val) : jj_repr(c, &sb, val);
        if (!rc) {
            size_t n = sb.n, ncp = jj_u8_count(sb.p ? sb.p : "", sb.n);
            if (prec >= 0 && (size_t)prec < ncp) { /* truncate to prec codepoints */
                size_t k = 0, cnt = 0;
                while (k < n && cnt < (size_t)prec) {
                    uint32_t cp = 0;
                    k += jj_u8_dec(sb.p + k, n - k, &cp);
                    cnt++;
                }
                n = k;
                ncp = cnt;
            }
            rc = fmt_pad(c, b, sb.p ? sb.p : "", n, ncp, width, left, ' ');
        }
        c->mem -= sb.cap < c->mem ? sb.cap : c->mem;
        jj_buf_free(&sb);
        break;
    }
    case 'd': case 'i': case 'u': case 'x': case 'X': case 'o': case 'c':
    case 'f': case 'F': case 'e': case 'E': case 'g': case 'G': {
        double fv = 0;
        int64_t iv = 0;
        int want_i = strchr("diuxXoc", type) != NULL;
        if (type == 'c' && val.k == JV_STR) {
            rc = jj_buf_put(c, b, jv_str(val)->s, jv_str(val)->len);
            break;
        }
        if ((rc = num_of(c, val, want_i, &fv, &iv))) break;
        int k = 0;
        spec[k++] = '%';
        if (left) spec[k++] = '-';
        if (zero) spec[k++] = '0';
        if (plus) spec[k++] = '+';
        if (space) spec[k++] = ' ';
        if (alt && type != 'o' && type != 'x' && type != 'X') spec[k++] = '#';
        spec[k++] = '*';
        if (prec >= 0 && !want_i) {
            spec[k++] = '.';
            spec[k++] = '*';
        }
        int n;
        if (type == 'c') {
            char e[4];
            size_t l = jj_u8_enc(e, (uint32_t)iv);
            rc = fmt_pad(c, b, e, l, 1, width, left, ' ');
            break;
        } else if (want_i) {
            const char *conv = (type == 'x') ? "llx" : (type == 'X') ? "llX" : (type == 'o') ? "llo" : "lld";
            memcpy(spec + k, conv, 4);
            int64_t mag = iv < 0 ? -iv : iv;
            if (type == 'x' || type == 'X' || type == 'o') {
                char digits[64];
                snprintf(digits, sizeof digits, type == 'x' ? "%llx" : type == 'X' ? "%llX" : "%llo", (unsigned long long)mag);
                char body[80];
                snprintf(body, sizeof body, "%s%s%s", iv < 0 ? "-" : plus ? "+" : space ? " " : "",
                         alt ? (type == 'x' ? "0x" : type == 'X' ? "0X" : "0o") : "", digits);
                n = snprintf(tmp, sizeof tmp, "%s", body);
                rc = fmt_pad(c, b, tmp, (size_t)n, (size_t)n, width, left, zero && !left ? '0' : ' ');
                break;
            }
            n = snprintf(tmp, sizeof tmp, spec, (int)width, (long long)iv);
        } else {
            spec[k++] = type;
            spec[k] = 0;
            if (prec >= 0) n = snprintf(tmp, sizeof tmp, spec, (int)width, (int)prec, fv);
            else n = snprintf(tmp, sizeof tmp, spec, (int)width, fv);
        }
        if (n < 0 || (size_t)n >= sizeof tmp) { rc = jj_fail(c, AL_ERANGE, "formatted number too long"); break; }
        rc = jj_buf_put(c, b, tmp, (size_t)n);
        break;
    }
    default:
        rc = jj_fail(c, AL_EFORMAT, "unsupported format character '%c' (0x%x)", type, (unsigned)(unsigned char)type);
    }
    return rc;
}

int jj_str_mod(jctx *c, jv fmt, jv args, jv *out) {
    const jstr *f = jv_str(fmt);
    jv *items = &args;
    size_t nitems = 1, used = 0;
    int is_map = args.k == JV_DICT;
    /* Python treats any non-tuple, non-str object with __getitem__ as a mapping */
    int maplike = is_map || args.k == JV_LIST || args.k == JV_UNDEF;
    if (args.k == JV_TUPLE) {
        items = jv_seq(args)->v;
        nitems = jv_seq(args)->n;
    }
    jbuf b = {0};
    int rc = AL_OK;
    for (size_t i = 0; i < f->len && !rc;) {
        if (f->s[i] != '%') {
            size_t j = i;
            while (j < f->len && f->s[j] != '%') j++;
            rc = jj_buf_put(c, &b, f->s + i, j - i);
            i = j;
            continue;
        }
        i++;
        if (i >= f->len) { rc = jj_fail(c, AL_EFORMAT, "incomplete format"); break; }
        jv val = {0};
        int have_val = 0;
        if (f->s[i] == '(') {
            size_t j = i + 1;
            while (j < f->len && f->s[j] != ')') j++;
            if (j >= f->len) { rc = jj_fail(c, AL_EFORMAT, "incomplete format key"); break; }
            if (!is_map) { rc = jj_fail(c, AL_EFORMAT, "format requires a mapping"); break; }
            if (!jj_map_get_name(jv_map(args), f->s + i + 1, j - i - 1, &val)) {
                rc = jj_fail(c, AL_EFORMAT, "'%.*s'", (int)(j - i - 1), f->s + i + 1);
                break;
            }
            have_val = 1;
            i = j + 1;
        }
        int left = 0, zero = 0, plus = 0, space = 0, alt = 0;
        while (i < f->len && strchr("-0+ #", f->s[i])) {
            char ch = f->s[i++];
            if (ch == '-') left = 1;
            else if (ch == '0') zero = 1;
            else if (ch == '+') plus = 1;
            else if (ch == ' ') space = 1;
            else alt = 1;
        }
        int64_t width = 0, prec = -1;
        while (i < f->len && f->s[i] >= '0' && f->s[i] <= '9') width = width * 10 + (f->s[i++] - '0');
        if (i < f->len && f->s[i] == '.') {
            i++;
            prec = 0;
            while (i < f->len && f->s[i] >= '0' && f->s[i] <= '9') prec = prec * 10 + (f->s[i++] - '0');
        }
        if (width > 100000 || prec > 1000) { rc = jj_fail(c, AL_ERANGE, "format width too large"); break; }
        if (i >= f->len) { rc = jj_fail(c, AL_EFORMAT, "incomplete format"); break; }
        char type = f->s[i++];
        if (type == '%') {
            rc = jj_buf_putc(c, &b, '%');
            continue;
        }
        if (!have_val) {
            if (is_map) val = args;
            else {
                if (used >= nitems) { rc = jj_fail(c, AL_EFORMAT, "not enough arguments for format string"); break; }
                val = items[used++];
            }
        }
        pct_spec sp = {left, zero, plus, space, alt, width, prec, type};
        rc = pct_convert(c, &b, &sp, val);
    }
    if (!rc && !is_map && used < nitems && args.k == JV_TUPLE)
        rc = jj_fail(c, AL_EFORMAT, "not all arguments converted during string formatting");
    if (!rc && !maplike && args.k != JV_TUPLE && used == 0)
        rc = jj_fail(c, AL_EFORMAT, "not all arguments converted during string formatting");
    if (rc) {
        c->mem -= b.cap < c->mem ? b.cap : c->mem;
        jj_buf_free(&b);
        return rc;
    }
    return jj_str_from_buf(c, &b, out);
}

/* str.format with {}, {0}, {name}, .attr / [key] chains, !r / !s and an
 * optional spec limited to [[fill]align][width][.precision][type] */
static int str_format(jctx *c, const jstr *f, jargs *a, jv *out) {
    jbuf b = {0};
    int rc = AL_OK, autoidx = 0;
    for (size_t i = 0; i < f->len && !rc;) {
        char ch = f->s[i];
        if (ch == '}' ) {
            if (i + 1 < f->len && f->s[i + 1] == '}') { rc = jj_buf_putc(c, &b, '}'); i += 2; continue; }
            rc = jj_fail(c, AL_EFORMAT, "Single '}' encountered in format string");
            break;
        }
        if (ch != '{') {
            rc = jj_buf_putc(c, &b, ch);
            i++;
            continue;
        }
        if (i + 1 < f->len && f->s[i + 1] == '{') { rc = jj_buf_putc(c, &b, '{'); i += 2; continue; }
        size_t j = i + 1;
        while (j < f->len && f->s[j] != '}') j++;
        if (j >= f->len) { rc = jj_fail(c, AL_EFORMAT, "Single '{' encountered in format string"); break; }
        const char *fld = f->s + i + 1;
        size_t fl = j - i - 1, k = 0;
        while (k < fl && fld[k] != '.' && fld[k] != '[' && fld[k] != '!' && fld[k] != ':') k++;
        jv val = {0};
        if (k == 0) {
            if (autoidx >= a->npos) { rc = jj_fail(c, AL_EFORMAT, "Replacement index %d out of range for positional args tuple", autoidx); break; }
            val = a->pos[autoidx++];
            jj_incref(val);
        } else if (fld[0] >= '0' && fld[0] <= '9') {
            int idx = atoi(fld);
            if (idx >= a->npos) { rc = jj_fail(c, AL_EFORMAT, "Replacement index %d out of range for positional args tuple", idx); break; }
            val = a->pos[idx];
            jj_incref(val);
        } else {
            int found = 0;
            for (int q = 0; q < a->nkw; q++)
                if (a->kn[q]->len == k && memcmp(a->kn[q]->s, fld, k) == 0) {
                    val = a->kv[q];
                    found = 1;
                }
            if (!found) { rc = jj_fail(c, AL_EFORMAT, "'%.*s'", (int)k, fld); break; }
            jj_incref(val);
        }
        while (k < fl && (fld[k] == '.' || fld[k] == '[') && !rc) {
            jv nv = {0};
            if (fld[k] == '.') {
                size_t e = k + 1;
                while (e < fl && fld[e] != '.' && fld[e] != '[' && fld[e] != '!' && fld[e] != ':') e++;
                rc = jj_getattr(c, val, fld + k + 1, e - k - 1, &nv);
                k = e;
            } else {
                size_t e = k + 1;
                while (e < fl && fld[e] != ']') e++;
                jv key = {0};
                int dig = e > k + 1;
                for (size_t q = k + 1; q < e; q++)
                    if (fld[q] < '0' || fld[q] > '9') dig = 0;
                if (dig) { key = jv_int(atoll(fld + k + 1)); rc = AL_OK; }
                else rc = jj_str_new(c, fld + k + 1, e - k - 1, &key);
                if (!rc) rc = jj_getitem(c, val, key, &nv);
                jj_decref(c, key);
                k = e + 1;
            }
            jj_decref(c, val);
            val = rc ? jv_undef() : nv;
        }
        if (rc) break;
        char conv = 0;
        if (k < fl && fld[k] == '!') {
            conv = k + 1 < fl ? fld[k + 1] : 0;
            k += 2;
        }
        const char *spec = "";
        size_t sl = 0;
        if (k < fl && fld[k] == ':') {
            spec = fld + k + 1;
            sl = fl - k - 1;
        }
        jbuf vb = {0};
        if (conv == 'r') rc = jj_repr(c, &vb, val);
        else if (conv == 'a') rc = jj_ascii_repr(c, &vb, val);
        else if (sl && jv_isnum(val) && !conv) {
            /* numeric spec: [width][.prec][type] */
            char cspec[32], tmp[512];
            size_t q = 0;
            char align = 0;
            if (q < sl && (spec[q] == '<' || spec[q] == '>' || spec[q] == '^')) align = spec[q++];
            int zero = q < sl && spec[q] == '0';
            int width = 0, prec = -1;
            while (q < sl && spec[q] >= '0' && spec[q] <= '9') width = width * 10 + (spec[q++] - '0');
            if (q < sl && spec[q] == '.') {
                prec = 0;
                q++;
                while (q < sl && spec[q] >= '0' && spec[q] <= '9') prec = prec * 10 + (spec[q++] - '0');
            }
            char type = q < sl ? spec[q++] : 0;
            if (q != sl || width > 100000 || prec > 1000 || align == '^') rc = jj_fail(c, AL_EUNSUP, "format spec '%.*s' is not supported", (int)sl, spec);
            else if (type == 'd' || (!type && val.k != JV_FLOAT)) {
                if (val.k == JV_FLOAT) rc = jj_fail(c, AL_EFORMAT, "Unknown format code 'd' for object of type 'float'");
                else {
                    snprintf(cspec, sizeof cspec, "%%%s%s*lld", align == '<' ? "-" : "", zero ? "0" : "");
                    int n = snprintf(tmp, sizeof tmp, cspec, width, (long long)val.u.i);
                    rc = jj_buf_put(c, &vb, tmp, (size_t)n);
                }
            } else if (type == 'f' || type == 'e' || type == 'g' || type == 'F' || type == 'E' || type == 'G') {
                double fv = val.k == JV_FLOAT ? val.u.f : (double)val.u.i;
                snprintf(cspec, sizeof cspec, "%%%s%s*.*%c", align == '<' ? "-" : "", zero ? "0" : "", type);
                int n = snprintf(tmp, sizeof tmp, cspec, width, prec < 0 ? 6 : prec, fv);
                rc = jj_buf_put(c, &vb, tmp, (size_t)n);
            } else {
                rc = jj_fail(c, AL_EUNSUP, "format spec '%.*s' is not supported", (int)sl, spec);
            }
        } else {
            rc = jj_to_str(c, &vb, val);
            if (!rc && sl) {
                size_t q = 0;
                char fill = ' ', align = '<';
                if (sl >= 2 && (spec[1] == '<' || spec[1] == '>' || spec[1] == '^')) { fill = spec[0]; align = spec[1]; q = 2; }
                else if (spec[0] == '<' || spec[0] == '>' || spec[0] == '^') { align = spec[0]; q = 1; }
                int64_t width = 0;
                while (q < sl && spec[q] >= '0' && spec[q] <= '9') width = width * 10 + (spec[q++] - '0');
                if (q < sl && spec[q] == 's') q++;
                if (q != sl || width > 100000) rc = jj_fail(c, AL_EUNSUP, "format spec '%.*s' is not supported", (int)sl, spec);
                else {
                    size_t ncp = jj_u8_count(vb.p ? vb.p : "", vb.n);
                    int64_t marg = width > (int64_t)ncp ? width - (int64_t)ncp : 0, lpad = align == '<' ? 0 : align == '>' ? marg : marg / 2;
                    for (int64_t z = 0; z < lpad && !rc; z++) rc = jj_buf_putc(c, &b, fill);
                    if (!rc) rc = jj_buf_put(c, &b, vb.p ? vb.p : "", vb.n);
                    for (int64_t z = 0; z < marg - lpad && !rc; z++) rc = jj_buf_putc(c, &b, fill);
                    vb.n = 0;
                }
            }
        }
        if (!rc) rc = jj_buf_put(c, &b, vb.p ? vb.p : "", vb.n);
        c->mem -= vb.cap < c->mem ? vb.cap : c->mem;
        jj_buf_free(&vb);
        jj_decref(c, val);
        i = j + 1;
    }
    if (rc) {
        c->mem -= b.cap < c->mem ? b.cap : c->mem;
        jj_buf_free(&b);
        return rc;
    }
    return jj_str_from_buf(c, &b, out);
}

/* ---------------------------------------------------------------- str methods */
/* Every method has this shape: fn is its name (for messages), arg the
 * variant the table gives it (lstrip vs rstrip, find vs rindex, ...). */
typedef int (*str_method_fn)(jctx *c, const char *fn, int arg, const jstr *s, jargs *a, jv *out);

/* s as a value of its own (a new reference). */
static jv str_ref(const jstr *s) {
    jv v = {.k = JV_STR, .u.o = (jo *)&s->h};
    jj_incref(v);
    return v;
}

/* a->pos[i], or a missing value past the positional arguments */
static jv pos_or_missing(const jargs *a, int i) { return a->npos > i ? a->pos[i] : (jv){.k = JV_MISSING}; }

enum { STRIP_LEFT = 1, STRIP_RIGHT = 2 };
static int m_strip(jctx *c, const char *fn, int arg, const jstr *s, jargs *a, jv *out) {
    int rc;
    if ((rc = jj_no_kwargs(c, fn, a))) return rc;
    if (a->npos > 1) return jj_fail(c, AL_EFORMAT, "%s expected at most 1 argument, got %d", fn, a->npos);
    return jj_strip(c, s, pos_or_missing(a, 0), arg & STRIP_LEFT, arg & STRIP_RIGHT, out);
}

/* split (arg 0), rsplit (arg 1) */
static int m_split(jctx *c, const char *fn, int arg, const jstr *s, jargs *a, jv *out) {
    static const char *const names[] = {"sep", "maxsplit"};
    jv p[2];
    int rc;
    if ((rc = jj_bind(c, fn, a, names, 2, p))) return rc;
    int64_t maxs = -1;
    if (!jj_missing(p[1]) && (rc = jj_want_int(c, p[1], &maxs))) return rc;
    return split_impl(c, s, p[0], maxs, arg, out);
}

static int m_splitlines(jctx *c, const char *fn, int arg, const jstr *s, jargs *a, jv *out) {
    static const char *const names[] = {"keepends"};
    jv p[1];
    int rc;
    (void)arg;
    if ((rc = jj_bind(c, fn, a, names, 1, p))) return rc;
    return jj_splitlines(c, s, !jj_missing(p[0]) && jj_truth(c, p[0]), out);
}

/* startswith (arg 0), endswith (arg 1): a string or a tuple of them */
static int m_affix(jctx *c, const char *fn, int arg, const jstr *s, jargs *a, jv *out) {
    int rc;
    if ((rc = jj_no_kwargs(c, fn, a))) return rc;
    if (a->npos < 1 || a->npos > 3) return jj_fail(c, AL_EFORMAT, "%s takes 1 to 3 arguments", fn);
    size_t from = 0, to = 0;
    if ((rc = sub_range(c, s, pos_or_missing(a, 1), pos_or_missing(a, 2), &from, &to))) return rc;
    jv pre = a->pos[0];
    jv *cands = &pre;
    size_t nc = 1;
    if (pre.k == JV_TUPLE) {
        cands = jv_seq(pre)->v;
        nc = jv_seq(pre)->n;
    }
    int hit = 0;
    for (size_t i = 0; i < nc && !hit; i++) {
        if (cands[i].k != JV_STR)
            return jj_fail(c, AL_EFORMAT, "%s first arg must be str or a tuple of str, not %s", fn, jj_type_name(cands[i]));
        const jstr *x = jv_str(cands[i]);
        if (from > s->len || to < from || to - from < x->len) continue;
        hit = arg == 0 ? memcmp(s->s + from, x->s, x->len) == 0 : memcmp(s->s + to - x->len, x->s, x->len) == 0;
    }
    *out = jv_bool(hit);
    return AL_OK;
}

/* upper, lower, title, capitalize, swapcase, casefold: arg is the CASE_ mode */
static int m_case(jctx *c, const char *fn, int arg, const jstr *s, jargs *a, jv *out) {
    if (a->npos || a->nkw) return jj_fail(c, AL_EFORMAT, "%s() takes no arguments", fn);
    return jj_map_case(c, s->s, s->len, arg, out);
}

static int m_replace(jctx *c, const char *fn, int arg, const jstr *s, jargs *a, jv *out) {
    static const char *const names[] = {"old", "new", "count"};
    jv p[3];
    int rc;
    (void)arg;
    if ((rc = jj_bind(c, fn, a, names, 3, p))) return rc;
    if (jj_missing(p[0]) || jj_missing(p[1])) return jj_fail(c, AL_EFORMAT, "replace expected at least 2 arguments");
    if ((rc = jj_want_str(c, p[0], "replace() argument 1")) || (rc = jj_want_str(c, p[1], "replace() argument 2"))) return rc;
    int64_t cnt = -1;
    if (!jj_missing(p[2]) && (rc = jj_want_int(c, p[2], &cnt))) return rc;
    return jj_replace(c, s, jv_str(p[0]), jv_str(p[1]), cnt, out);
}

/* Occurrences of x in s[from:to], not overlapping ("" counts between
 * every character and at both ends, as Python does). */
static int64_t count_sub(const jstr *s, const jstr *x, size_t from, size_t to) {
    if (from > s->len) return 0;
    if (x->len == 0) return (int64_t)jj_u8_count(s->s + from, to - from) + 1;
    int64_t cnt = 0;
    ptrdiff_t f;
    for (size_t i = from; (f = jj_find_sub(s->s, i, to, x->s, x->len, 0)) >= 0; i = (size_t)f + x->len) cnt++;
    return cnt;
}

/* find, rfind, index, rindex, count */
enum { FIND_REV = 1, FIND_RAISE = 2, FIND_COUNT = 4 };
static int m_find(jctx *c, const char *fn, int arg, const jstr *s, jargs *a, jv *out) {
    int rc;
    if ((rc = jj_no_kwargs(c, fn, a))) return rc;
    if (a->npos < 1 || a->npos > 3) return jj_fail(c, AL_EFORMAT, "%s takes 1 to 3 arguments", fn);
    if ((rc = jj_want_str(c, a->pos[0], "must be str,"))) return rc;
    size_t from = 0, to = 0;
    if ((rc = sub_range(c, s, pos_or_missing(a, 1), pos_or_missing(a, 2), &from, &to))) return rc;
    const jstr *x = jv_str(a->pos[0]);
    if (arg & FIND_COUNT) {
        *out = jv_int(count_sub(s, x, from, to));
        return AL_OK;
    }
    ptrdiff_t f = from > s->len ? -1 : jj_find_sub(s->s, from, to, x->s, x->len, arg & FIND_REV);
    if (f < 0 && (arg & FIND_RAISE)) return jj_fail(c, AL_EFORMAT, "substring not found");
    *out = jv_int(f < 0 ? -1 : (int64_t)cp_index_of(s->s, (size_t)f));
    return AL_OK;
}

static int m_join(jctx *c, const char *fn, int arg, const jstr *s, jargs *a, jv *out) {
    int rc;
    (void)arg;
    if ((rc = jj_no_kwargs(c, fn, a))) return rc;
    if (a->npos != 1) return jj_fail(c, AL_EFORMAT, "str.join() takes exactly one argument (%d given)", a->npos);
    jv items = {0};
    if ((rc = jj_iter_list(c, a->pos[0], &items))) return rc;
    jbuf b = {0};
    jseq *q = jv_seq(items);
    for (size_t i = 0; i < q->n && !rc; i++) {
        if (q->v[i].k != JV_STR) {
            rc = jj_fail(c, AL_EFORMAT, "sequence item %zu: expected str instance, %s found", i, jj_type_name(q->v[i]));
            break;
        }
        if (i) rc = jj_buf_put(c, &b, s->s, s->len);
        if (!rc) rc = jj_buf_put(c, &b, jv_str(q->v[i])->s, jv_str(q->v[i])->len);
    }
    jj_decref(c, items);
    if (rc) {
        jj_buf_free(&b);
        return rc;
    }
    return jj_str_from_buf(c, &b, out);
}

static int m_format(jctx *c, const char *fn, int arg, const jstr *s, jargs *a, jv *out) {
    (void)fn;
    (void)arg;
    return str_format(c, s, a, out);
}

/* One character's test for str.isalnum() ... str.isidentifier() (i: its
 * byte offset; an identifier starts differently). */
static int char_is(uint32_t cp, int what, size_t i) {
    switch (what) {
    case JJ_IS_ALNUM: return al_uc_is_alpha(cp) || al_uc_is_numeric(cp);
    case JJ_IS_ALPHA: return al_uc_is_alpha(cp);
    case JJ_IS_ASCII: return cp < 0x80;
    case JJ_IS_DECIMAL: return al_uc_is_decimal(cp);
    case JJ_IS_DIGIT: return al_uc_is_digit(cp);
    case JJ_IS_NUMERIC: return al_uc_is_numeric(cp);
    case JJ_IS_SPACE: return al_uc_is_space(cp);
    case JJ_IS_PRINTABLE: return al_uc_is_printable(cp);
    default: return cp == '_' || (i == 0 ? al_uc_is_id_start(cp) : al_uc_is_id_continue(cp)); /* identifier */
    }
}

/* Python's str.is*() of one of the JJ_IS_ predicates */
int jj_str_is(jctx *c, const jstr *s, int what, jv *out) {
    (void)c;
    int ok = s->len > 0 || what == JJ_IS_ASCII || what == JJ_IS_PRINTABLE, cased = 0, prev_cased = 0;
    for (size_t i = 0; i < s->len && ok;) {
        uint32_t cp = 0;
        size_t k = jj_u8_dec(s->s + i, s->len - i, &cp);
        int up = al_uc_is_upper(cp), lo = al_uc_is_lower(cp), ti = al_uc_is_title(cp);
        switch (what) {
        case JJ_IS_UPPER: /* no lowercase or titlecase letter, one uppercase */
            ok = !lo && !ti;
            cased |= up;
            break;
        case JJ_IS_LOWER:
            ok = !up && !ti;
            cased |= lo;
            break;
        case JJ_IS_TITLE: /* uppercase only after uncased, lowercase only after cased */
            if (up || ti) ok = !prev_cased;
            else if (lo) ok = prev_cased;
            prev_cased = up || ti || lo;
            cased |= prev_cased;
            break;
        default: ok = char_is(cp, what, i);
        }
        i += k;
    }
    if (what == JJ_IS_UPPER || what == JJ_IS_LOWER || what == JJ_IS_TITLE) ok = ok && cased;
    *out = jv_bool(ok);
    return AL_OK;
}

static int m_is(jctx *c, const char *fn, int arg, const jstr *s, jargs *a, jv *out) {
    if (a->npos || a->nkw) return jj_fail(c, AL_EFORMAT, "%s() takes no arguments", fn);
    return jj_str_is(c, s, arg, out);
}

/* center (arg 0), ljust (1), rjust (2) */
static int m_pad(jctx *c, const char *fn, int arg, const jstr *s, jargs *a, jv *out) {
    int rc;
    if ((rc = jj_no_kwargs(c, fn, a))) return rc;
    if (a->npos < 1 || a->npos > 2) return jj_fail(c, AL_EFORMAT, "%s() takes 1 or 2 arguments", fn);
    int64_t w = 0;
    if ((rc = jj_want_int(c, a->pos[0], &w))) return rc;
    return jj_pad(c, s, w, pos_or_missing(a, 1), arg, out);
}

static int m_zfill(jctx *c, const char *fn, int arg, const jstr *s, jargs *a, jv *out) {
    int rc;
    (void)arg;
    if ((rc = jj_no_kwargs(c, fn, a))) return rc;
    if (a->npos != 1) return jj_fail(c, AL_EFORMAT, "%s() takes 1 or 2 arguments", fn);
    int64_t w = 0;
    if ((rc = jj_want_int(c, a->pos[0], &w))) return rc;
    if (w <= (int64_t)s->ncp) {
        *out = str_ref(s);
        return AL_OK;
    }
    if (w > (int64_t)JJ_OUT_MAX) return jj_fail(c, AL_ERANGE, "string too long");
    jbuf b = {0};
    size_t sign = (s->len && (s->s[0] == '+' || s->s[0] == '-')) ? 1 : 0;
    rc = jj_buf_put(c, &b, s->s, sign);
    for (int64_t i = 0; i < w - (int64_t)s->ncp && !rc; i++) rc = jj_buf_putc(c, &b, '0');
    if (!rc) rc = jj_buf_put(c, &b, s->s + sign, s->len - sign);
    if (rc) {
        jj_buf_free(&b);
        return rc;
    }
    return jj_str_from_buf(c, &b, out);
}

/* removeprefix (arg 0), removesuffix (arg 1) */
static int m_remove_affix(jctx *c, const char *fn, int arg, const jstr *s, jargs *a, jv *out) {
    int rc;
    if ((rc = jj_no_kwargs(c, fn, a))) return rc;
    if (a->npos != 1) return jj_fail(c, AL_EFORMAT, "%s() takes exactly one argument", fn);
    if ((rc = jj_want_str(c, a->pos[0], fn))) return rc;
    const jstr *x = jv_str(a->pos[0]);
    if (x->len <= s->len) {
        if (arg == 0 && memcmp(s->s, x->s, x->len) == 0) return jj_str_new(c, s->s + x->len, s->len - x->len, out);
        if (arg == 1 && x->len && memcmp(s->s + s->len - x->len, x->s, x->len) == 0)
            return jj_str_new(c, s->s, s->len - x->len, out);
    }
    *out = str_ref(s);
    return AL_OK;
}

/* partition (arg 0), rpartition (arg 1) */
static int m_partition(jctx *c, const char *fn, int arg, const jstr *s, jargs *a, jv *out) {
    int rc;
    if ((rc = jj_no_kwargs(c, fn, a))) return rc;
    if (a->npos != 1) return jj_fail(c, AL_EFORMAT, "%s() takes exactly one argument", fn);
    if ((rc = jj_want_str(c, a->pos[0], fn))) return rc;
    const jstr *x = jv_str(a->pos[0]);
    if (!x->len) return jj_fail(c, AL_EFORMAT, "empty separator");
    ptrdiff_t f = jj_find_sub(s->s, 0, s->len, x->s, x->len, arg);
    jv parts[3];
    if (f < 0) { /* (s, "", "") or ("", "", s) */
        int whole = arg ? 2 : 0;
        parts[whole] = str_ref(s);
        rc = jj_str_new(c, "", 0, &parts[1]);
        if (!rc) rc = jj_str_new(c, "", 0, &parts[2 - whole]);
    } else {
        rc = jj_str_new(c, s->s, (size_t)f, &parts[0]);
        if (!rc) {
            jj_incref(a->pos[0]);
            parts[1] = a->pos[0];
            rc = jj_str_new(c, s->s + f + x->len, s->len - (size_t)f - x->len, &parts[2]);
        }
    }
    if (rc) return rc;
    if ((rc = jj_seq_new(c, JV_TUPLE, 3, out))) return rc;
    for (int i = 0; i < 3; i++) jj_seq_push(c, jv_seq(*out), parts[i]);
    return AL_OK;
}

/* The methods of str the immutable sandbox allows, by name. A NULL function
 * is known by name but fails with AL_EUNSUP when called. */
static const struct {
    const char *name;
    str_method_fn fn;
    int arg;
} STR_METHODS[] = {
    {"capitalize", m_case, JJ_CASE_CAPITALIZE},
    {"casefold", m_case, JJ_CASE_FOLD},
    {"center", m_pad, 0},
    {"count", m_find, FIND_COUNT},
    {"encode", NULL, 0},
    {"endswith", m_affix, 1},
    {"expandtabs", NULL, 0},
    {"find", m_find, 0},
    {"format", m_format, 0},
    {"format_map", NULL, 0},
    {"index", m_find, FIND_RAISE},
    {"isalnum", m_is, JJ_IS_ALNUM},
    {"isalpha", m_is, JJ_IS_ALPHA},
    {"isascii", m_is, JJ_IS_ASCII},
    {"isdecimal", m_is, JJ_IS_DECIMAL},
    {"isdigit", m_is, JJ_IS_DIGIT},
    {"isidentifier", m_is, JJ_IS_IDENTIFIER},
    {"islower", m_is, JJ_IS_LOWER},
    {"isnumeric", m_is, JJ_IS_NUMERIC},
    {"isprintable", m_is, JJ_IS_PRINTABLE},
    {"isspace", m_is, JJ_IS_SPACE},
    {"istitle", m_is, JJ_IS_TITLE},
    {"isupper", m_is, JJ_IS_UPPER},
    {"join", m_join, 0},
    {"ljust", m_pad, 1},
    {"lower", m_case, JJ_CASE_LOWER},
    {"lstrip", m_strip, STRIP_LEFT},
    {"maketrans", NULL, 0},
    {"partition", m_partition, 0},
    {"removeprefix", m_remove_affix, 0},
    {"removesuffix", m_remove_affix, 1},
    {"replace", m_replace, 0},
    {"rfind", m_find, FIND_REV},
    {"rindex", m_find, FIND_REV | FIND_RAISE},
    {"rjust", m_pad, 2},
    {"rpartition", m_partition, 1},
    {"rsplit", m_split, 1},
    {"rstrip", m_strip, STRIP_RIGHT},
    {"split", m_split, 0},
    {"splitlines", m_splitlines, 0},
    {"startswith", m_affix, 0},
    {"strip", m_strip, STRIP_LEFT | STRIP_RIGHT},
    {"swapcase", m_case, JJ_CASE_SWAP},
    {"title", m_case, JJ_CASE_TITLE},
    {"translate", NULL, 0},
    {"upper", m_case, JJ_CASE_UPPER},
    {"zfill", m_zfill, 0},
};
#define N_STR_METHODS ((int)(sizeof STR_METHODS / sizeof STR_METHODS[0]))

int jj_str_method_id(const char *name, size_t n) {
    for (int i = 0; i < N_STR_METHODS; i++)
        if (strlen(STR_METHODS[i].name) == n && memcmp(STR_METHODS[i].name, name, n) == 0) return i;
    return -1;
}

int jj_str_method_call(jctx *c, int id, const jstr *s, jargs *a, jv *out) {
    if (!STR_METHODS[id].fn) return jj_fail(c, AL_EUNSUP, "str.%s() is not supported", STR_METHODS[id].name);
    return STR_METHODS[id].fn(c, STR_METHODS[id].name, STR_METHODS[id].arg, s, a, out);
}
