/* The SQLite store (see store.h).
 *
 * One connection, one mutex. Statements are prepared once (SQLITE_PREPARE_
 * PERSISTENT) and cached by the address of their SQL text, which is always a
 * string literal; q() resets, clears and binds them from a small format
 * ("i" int64, "t" text or NULL, "d" double, "n" null). Transactions are
 * BEGIN IMMEDIATE ... COMMIT through cached statements too. */
#define _XOPEN_SOURCE 700
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <openssl/crypto.h>
#include <stddef.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/ids.h"
#include "io.h"
#include "log.h"

#define N_STMT 160

/* A connection and its statement cache. */
typedef struct dbc {
    sqlite3 *db;
    struct {
        const char *sql;
        sqlite3_stmt *st;
    } stmt[N_STMT];
    int n_stmt;
} dbc;

/* Two connections: w for every write (under mu) and r for the reads the
 * HTTP threads make (under rmu), each read function one read transaction.
 * WAL lets r read while w commits, so a list request no longer waits behind
 * a training step's synchronous=FULL commit, and one read transaction takes
 * the shared-memory locks once instead of once per statement. */
struct store {
    sqlite3 *db;            /* w.db */
    dbc w, r;
    pthread_mutex_t mu, rmu;
    pthread_cond_t feed_cv;
    uint64_t feed_ver;
    _Atomic uint64_t objects_epoch; /* store_objects_epoch */
    int version;
    char dir[STORE_PATH];
};

/* The connection the calling thread holds (LOCK/RLOCK set it). */
static _Thread_local dbc *tl_dbc;

static int64_t now_s(void) { return (int64_t)time(NULL); }

int store_status_final(const char *st) {
    return !strcmp(st, "succeeded") || !strcmp(st, "failed") || !strcmp(st, "cancelled");
}

int store_sha256(const void *data, size_t len, unsigned char out[32]) {
    unsigned int n = 0;
    return EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) == 1 && n == 32 ? 0 : -1;
}

void store_hex(const unsigned char *in, size_t n, char *hex) {
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        hex[2 * i] = d[in[i] >> 4];
        hex[2 * i + 1] = d[in[i] & 15];
    }
    hex[2 * n] = 0;
}

/* ---- statements -------------------------------------------------------------- */

static dbc *cur(store *s) { return tl_dbc ? tl_dbc : &s->w; }

static void db_fail(store *s, const char *what) {
    log_error("event=db_error op=%s err=\"%s\"", what, sqlite3_errmsg(cur(s)->db));
}

static sqlite3_stmt *q(store *s, const char *sql, const char *fmt, ...) {
    sqlite3_stmt *st = NULL;
    dbc *c = cur(s);
    for (int i = 0; i < c->n_stmt; i++)
        if (c->stmt[i].sql == sql) {
            st = c->stmt[i].st;
            break;
        }
    if (!st) {
        if (c->n_stmt == N_STMT ||
            sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
            db_fail(s, "prepare");
            log_error("event=db_prepare sql=\"%.80s\"", sql);
            return NULL;
        }
        c->stmt[c->n_stmt].sql = sql;
        c->stmt[c->n_stmt++].st = st;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    va_list ap;
    va_start(ap, fmt);
    for (int i = 0; fmt && fmt[i]; i++) {
        int k = i + 1;
        switch (fmt[i]) {
        case 'i': sqlite3_bind_int64(st, k, va_arg(ap, int64_t)); break;
        case 'd': {
            double v = va_arg(ap, double);
            if (isfinite(v)) sqlite3_bind_double(st, k, v);
            else sqlite3_bind_null(st, k);
            break;
        }
        case 't': {
            const char *t = va_arg(ap, const char *);
            if (t) sqlite3_bind_text(st, k, t, -1, SQLITE_TRANSIENT);
            else sqlite3_bind_null(st, k);
            break;
        }
        case 'n': sqlite3_bind_null(st, k); break;
        }
    }
    va_end(ap);
    return st;
}

/* Steps a statement that returns no rows. */
static int exec_st(store *s, sqlite3_stmt *st) {
    if (!st) return STORE_EIO;
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        db_fail(s, "step");
        return STORE_EIO;
    }
    return STORE_OK;
}

static const char SQL_BEGIN[] = "BEGIN IMMEDIATE";
static const char SQL_COMMIT[] = "COMMIT";
static const char SQL_ROLLBACK[] = "ROLLBACK";
static int tx_begin(store *s) { return exec_st(s, q(s, SQL_BEGIN, NULL)); }
/* SQLite may have rolled the transaction back itself (SQLITE_FULL,
 * SQLITE_IOERR): ROLLBACK only while one is open, or it fails with
 * "cannot rollback - no transaction is active". */
static void tx_rollback(store *s) {
    if (!sqlite3_get_autocommit(s->db)) exec_st(s, q(s, SQL_ROLLBACK, NULL));
}
static int tx_commit(store *s) {
    int rc = exec_st(s, q(s, SQL_COMMIT, NULL));
    if (rc) tx_rollback(s);
    return rc;
}

static const char *col_text(sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? (const char *)t : NULL;
}
static void col_copy(sqlite3_stmt *st, int i, char *dst, size_t n) {
    const char *t = col_text(st, i);
    snprintf(dst, n, "%s", t ? t : "");
}
static json_t *col_real_json(sqlite3_stmt *st, int i) {
    return sqlite3_column_type(st, i) == SQLITE_NULL ? json_null() : json_real(sqlite3_column_double(st, i));
}
static json_t *col_json(sqlite3_stmt *st, int i) {
    const char *t = col_text(st, i);
    if (!t) return json_null();
    json_t *v = json_loads(t, 0, NULL);
    return v ? v : json_null();
}
static char *dump(const json_t *v) {
    return v && !json_is_null(v) ? json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
}

/* ---- open and migrate ------------------------------------------------------------ */

typedef struct mig {
    int num;
    char name[256];
} mig;

static int mig_cmp(const void *a, const void *b) { return ((const mig *)a)->num - ((const mig *)b)->num; }

/* Lists NNNN_name.sql files, sorted. Returns the count, -1 when unreadable. */
static int list_migrations(const char *dir, mig *out, int cap) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        const char *nm = e->d_name;
        size_t len = strlen(nm);
        if (len < 9 || len >= sizeof out[0].name || strcmp(nm + len - 4, ".sql")) continue;
        int ok = 1;
        for (int i = 0; i < 4; i++) ok &= nm[i] >= '0' && nm[i] <= '9';
        if (!ok || nm[4] != '_') continue;
        out[n].num = atoi(nm);
        snprintf(out[n].name, sizeof out[n].name, "%s", nm);
        n++;
    }
    closedir(d);
    qsort(out, (size_t)n, sizeof *out, mig_cmp);
    return n;
}

int store_migrations_latest(const char *dir) {
    mig m[256];
    int n = list_migrations(dir, m, 256);
    return n < 0 ? -1 : n == 0 ? 0 : m[n - 1].num;
}

static int user_version(sqlite3 *db) {
    sqlite3_stmt *st;
    int v = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    return v;
}

static int migrate(sqlite3 *db, const char *dir, int *version, char err[AL_ERRLEN]) {
    mig m[256];
    int n = list_migrations(dir, m, 256);
    if (n < 0) {
        snprintf(err, AL_ERRLEN, "migrations directory %s: %s", dir, strerror(errno));
        return STORE_EIO;
    }
    int v = user_version(db);
    int latest = n ? m[n - 1].num : 0;
    if (v > latest) {
        snprintf(err, AL_ERRLEN,
                 "database schema version %d is newer than this alignd supports (%d): it was written by a "
                 "newer alignd; run that version or restore a backup of the state directory", v, latest);
        return STORE_ESTATE;
    }
    for (int i = 0; i < n; i++) {
        if (m[i].num <= v) continue;
        char path[STORE_PATH + 300], *sql = NULL, e2[AL_ERRLEN];
        size_t len;
        snprintf(path, sizeof path, "%s/%s", dir, m[i].name);
        if (al_file_read(path, 16 << 20, &sql, &len, e2)) {
            snprintf(err, AL_ERRLEN, "migration %.200s: %.250s", m[i].name, e2);
            return STORE_EIO;
        }
        char *msg = NULL, pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d;", m[i].num);
        int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &msg);
        if (rc == SQLITE_OK) rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
        if (rc == SQLITE_OK) rc = sqlite3_exec(db, pragma, NULL, NULL, &msg);
        if (rc == SQLITE_OK) rc = sqlite3_exec(db, "COMMIT", NULL, NULL, &msg);
        free(sql);
        if (rc != SQLITE_OK) {
            snprintf(err, AL_ERRLEN, "migration %.200s failed: %.250s", m[i].name, msg ? msg : sqlite3_errmsg(db));
            sqlite3_free(msg);
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return STORE_EIO;
        }
        log_info("event=migrated version=%d file=%s", m[i].num, m[i].name);
        v = m[i].num;
    }
    *version = v;
    return STORE_OK;
}

int store_open(store **out, const char *state_dir, const char *migrations_dir, char err[AL_ERRLEN]) {
    char e2[AL_ERRLEN];
    if (al_mkdir_p(state_dir, e2)) {
        snprintf(err, AL_ERRLEN, "state directory: %.490s", e2);
        return STORE_EIO;
    }
    store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, AL_ERRLEN, "out of memory");
        return STORE_EIO;
    }
    snprintf(s->dir, sizeof s->dir, "%s", state_dir);
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->feed_cv, &ca);
    pthread_condattr_destroy(&ca);
    char path[STORE_PATH + 32];
    snprintf(path, sizeof path, "%s/alignd.db", state_dir);
    /* created owner-only whatever the umask (SQLite gives its -wal and -shm
     * files the database's mode): it holds key hashes and users' data */
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) close(fd);
    pthread_mutex_init(&s->rmu, NULL);
    int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    s->w.db = s->db;
    if (rc != SQLITE_OK) {
        snprintf(err, AL_ERRLEN, "%.300s: %.200s", path, s->db ? sqlite3_errmsg(s->db) : "cannot open");
        store_close(s);
        return STORE_EIO;
    }
    sqlite3_busy_timeout(s->db, 10000);
    char *msg = NULL;
    /* FULL: a commit survives power loss; WAL keeps readers off writers'
     * backs; a small auto-checkpoint bounds the WAL file's size. */
    rc = sqlite3_exec(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
                             "PRAGMA wal_autocheckpoint=256; PRAGMA journal_size_limit=4194304;",
                      NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        snprintf(err, AL_ERRLEN, "%.300s: %.200s", path, msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        store_close(s);
        return STORE_EIO;
    }
    if ((rc = migrate(s->db, migrations_dir, &s->version, err))) {
        store_close(s);
        return rc;
    }
    if (sqlite3_open_v2(path, &s->r.db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        snprintf(err, AL_ERRLEN, "%.300s: %.200s", path, s->r.db ? sqlite3_errmsg(s->r.db) : "cannot open");
        store_close(s);
        return STORE_EIO;
    }
    sqlite3_busy_timeout(s->r.db, 10000);
    *out = s;
    return STORE_OK;
}

void store_close(store *s) {
    if (!s) return;
    for (int i = 0; i < s->w.n_stmt; i++) sqlite3_finalize(s->w.stmt[i].st);
    for (int i = 0; i < s->r.n_stmt; i++) sqlite3_finalize(s->r.stmt[i].st);
    if (s->r.db) sqlite3_close(s->r.db);
    if (s->db) sqlite3_close(s->db);
    pthread_mutex_destroy(&s->rmu);
    pthread_cond_destroy(&s->feed_cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int store_version(store *s) { return s->version; }
const char *store_state_dir(const store *s) { return s->dir; }

#define LOCK() (pthread_mutex_lock(&s->mu), tl_dbc = &s->w)
#define UNLOCK() (tl_dbc = NULL, pthread_mutex_unlock(&s->mu))
/* Reads: the read connection, in one read transaction. */
static const char SQL_RBEGIN[] = "BEGIN";
static const char SQL_REND[] = "COMMIT";
#define RLOCK() (pthread_mutex_lock(&s->rmu), tl_dbc = &s->r, exec_st(s, q(s, SQL_RBEGIN, NULL)))
#define RUNLOCK() (exec_st(s, q(s, SQL_REND, NULL)), tl_dbc = NULL, pthread_mutex_unlock(&s->rmu))

/* A final job's object may have changed without a feed write. */
static void objects_changed(store *s) { atomic_fetch_add(&s->objects_epoch, 1); }

uint64_t store_objects_epoch(store *s) { return atomic_load(&s->objects_epoch); }

/* ---- rows and their memory ------------------------------------------------------- */

/* A block of a read's memory: the text of its rows, their small arrays. */
struct store_blk {
    struct store_blk *next;
    size_t used, cap;
    max_align_t data[];
};

void store_rows_free(store_rows *r) {
    if (!r) return;
    free(r->v);
    for (struct store_blk *b = r->mem, *nx; b; b = nx) {
        nx = b->next;
        free(b);
    }
    memset(r, 0, sizeof *r);
}

/* n bytes of r's memory, aligned; NULL (and r->oom set) when memory runs out. */
static void *rows_alloc(store_rows *r, size_t n) {
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    struct store_blk *b = r->mem;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 16384 ? n : 16384;
        if (!(b = malloc(sizeof *b + cap))) {
            r->oom = 1;
            return NULL;
        }
        b->next = r->mem;
        b->used = 0;
        b->cap = cap;
        r->mem = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    return p;
}

/* A new zeroed row of `size` bytes at the end of r->v (which may move). */
static void *rows_push(store_rows *r, size_t size) {
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 16;
        void *v = realloc(r->v, (size_t)cap * size);
        if (!v) {
            r->oom = 1;
            return NULL;
        }
        r->v = v;
        r->cap = cap;
    }
    void *row = (char *)r->v + (size_t)r->n++ * size;
    memset(row, 0, size);
    return row;
}

/* Room for one more element in an array of r's memory holding n of size
 * bytes with room for *cap: the array (moved when it grew), or NULL when
 * memory ran out. */
static void *arr_room(store_rows *r, void *a, int n, int *cap, size_t size) {
    if (n < *cap) return a;
    int grown = *cap ? 2 * *cap : 8;
    void *g = rows_alloc(r, (size_t)grown * size);
    if (!g) return NULL;
    if (n) memcpy(g, a, (size_t)n * size);
    *cap = grown;
    return g;
}

/* Appends v to ids (n of them, room for *cap) in r's memory; returns the
 * array, which may have moved. */
static int64_t *ids_push(store_rows *r, int64_t *ids, int *n, int *cap, int64_t v) {
    int64_t *a = arr_room(r, ids, *n, cap, sizeof *ids);
    if (!a) return ids;
    a[(*n)++] = v;
    return a;
}

/* Adds metric (name, value) to row m in r's memory (room for *cap). */
static void metric_push(store_rows *r, store_metrics_row *m, int *cap, const char *name, double value) {
    store_metric *a = arr_room(r, (store_metric *)m->m, m->n, cap, sizeof *a);
    if (!a) return;
    a[m->n].name = name;
    a[m->n++].value = value;
    m->m = a;
}

/* Column i's text in r's memory; NULL where it is NULL. */
static const char *col_str(store_rows *r, sqlite3_stmt *st, int i) {
    const char *t = col_text(st, i);
    if (!t) return NULL;
    size_t n = (size_t)sqlite3_column_bytes(st, i);
    char *c = rows_alloc(r, n + 1);
    if (c) memcpy(c, t, n + 1);
    return c;
}

/* Column i as a number; NAN where it is NULL. */
static double col_real(sqlite3_stmt *st, int i) {
    return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

/* The end of a read: STORE_OK, or STORE_EIO (r freed) when memory ran out. */
static int rows_done(store_rows *r, int rc) {
    if (!rc && r->oom) rc = STORE_EIO;
    if (rc) store_rows_free(r);
    return rc;
}

/* A paged read fetched up to limit + 1 rows: the last one only says more follow. */
static void rows_page(store_rows *r, int limit) {
    if (r->n > limit) {
        r->n = limit;
        r->more = 1;
    }
}

/* ---- feed clock ------------------------------------------------------------------- */

static void feed_bump(store *s) {
    s->feed_ver++;
    pthread_cond_broadcast(&s->feed_cv);
}

uint64_t store_feed_version(store *s) {
    LOCK();
    uint64_t v = s->feed_ver;
    UNLOCK();
    return v;
}

void store_feed_wait(store *s, uint64_t seen, int timeout_ms) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    LOCK();
    while (s->feed_ver == seen)
        if (pthread_cond_timedwait(&s->feed_cv, &s->mu, &ts) == ETIMEDOUT) break;
    UNLOCK();
}

void store_feed_kick(store *s) {
    LOCK();
    feed_bump(s);
    UNLOCK();
}

/* Next feed seq of a job (inside a transaction); 0 on error. n seqs are
 * reserved; the first is returned. */
static const char SQL_SEQ[] = "UPDATE jobs SET last_seq = last_seq + ?2 WHERE id = ?1 RETURNING last_seq";
static int64_t next_seq(store *s, int64_t job, int n) {
    sqlite3_stmt *st = q(s, SQL_SEQ, "ii", job, (int64_t)n);
    if (!st || sqlite3_step(st) != SQLITE_ROW) {
        if (st) sqlite3_reset(st);
        return 0;
    }
    int64_t v = sqlite3_column_int64(st, 0) - n + 1;
    sqlite3_reset(st);
    return v;
}

/* ---- files ------------------------------------------------------------------------ */

static void blob_path(const store *s, const char *sha, char path[STORE_PATH]) {
    snprintf(path, STORE_PATH, "%.3900s/files/%.2s/%.64s", s->dir, sha, sha);
}

static const char SQL_FILE_INS[] =
    "INSERT INTO files(filename, purpose, bytes, sha256, created_at, status, status_details, validation, job_id)"
    " VALUES (?,?,?,?,?,?,?,?,?)";

int store_file_add(store *s, const char *filename, const char *purpose, const void *data, size_t len,
                   const char *status, const char *details, const json_t *validation, int64_t job_id,
                   int64_t *id, char err[AL_ERRLEN]) {
    unsigned char h[32];
    char hex[65], path[STORE_PATH], dir[STORE_PATH], e2[AL_ERRLEN];
    if (store_sha256(data, len, h)) {
        snprintf(err, AL_ERRLEN, "sha256 failed");
        return STORE_EIO;
    }
    store_hex(h, 32, hex);
    blob_path(s, hex, path);
    snprintf(dir, sizeof dir, "%.3900s/files/%.2s", s->dir, hex);
    /* content-addressed: an existing blob already holds these bytes */
    if (!al_file_exists(path)) {
        if (al_mkdir_p(dir, e2) || al_file_write_atomic(path, data, len, e2)) {
            snprintf(err, AL_ERRLEN, "storing the file: %.200s", e2);
            return STORE_EIO;
        }
    }
    char *val = dump(validation);
    LOCK();
    int rc = exec_st(s, q(s, SQL_FILE_INS, "ttitittti", filename, purpose, (int64_t)len, hex, now_s(), status,
                          details, val, job_id ? job_id : (int64_t)0));
    if (!rc) *id = sqlite3_last_insert_rowid(s->db);
    UNLOCK();
    free(val);
    if (rc) snprintf(err, AL_ERRLEN, "database write failed");
    return rc;
}

#define FILE_COLS "id, bytes, created_at, filename, purpose, status, status_details, sha256, validation, job_id"
static const char SQL_FILE_GET[] = "SELECT " FILE_COLS " FROM files WHERE id = ? AND deleted = 0";
static const char SQL_FILE_PAGE[] =
    "SELECT " FILE_COLS " FROM files WHERE deleted = 0 AND id < ?1 AND (?2 IS NULL OR purpose = ?2)"
    " ORDER BY id DESC LIMIT ?3";

/* Appends the file row st is on. */
static void file_row(store_rows *r, sqlite3_stmt *st) {
    store_file_row *f = rows_push(r, sizeof *f);
    if (!f) return;
    f->id = sqlite3_column_int64(st, 0);
    f->bytes = sqlite3_column_int64(st, 1);
    f->created_at = sqlite3_column_int64(st, 2);
    f->filename = col_str(r, st, 3);
    f->purpose = col_str(r, st, 4);
    f->status = col_str(r, st, 5);
    f->status_details = col_str(r, st, 6);
    f->sha256 = col_str(r, st, 7);
    f->validation = col_str(r, st, 8);
    f->job_id = sqlite3_column_int64(st, 9);
}

int store_file_read(store *s, int64_t id, store_rows *out) {
    memset(out, 0, sizeof *out);
    RLOCK();
    sqlite3_stmt *st = q(s, SQL_FILE_GET, "i", id);
    int rc = st ? STORE_ENOTFOUND : STORE_EIO;
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        file_row(out, st);
        rc = STORE_OK;
    }
    if (st) sqlite3_reset(st);
    RUNLOCK();
    return rows_done(out, rc);
}

int store_file_page(store *s, int64_t after, int limit, const char *purpose, store_rows *out) {
    memset(out, 0, sizeof *out);
    RLOCK();
    sqlite3_stmt *st = q(s, SQL_FILE_PAGE, "iti", after > 0 ? after : INT64_MAX, purpose, (int64_t)limit + 1);
    while (st && sqlite3_step(st) == SQLITE_ROW) file_row(out, st);
    if (st) sqlite3_reset(st);
    RUNLOCK();
    rows_page(out, limit);
    return rows_done(out, STORE_OK);
}

static const char SQL_FILE_INFO[] = "SELECT status, sha256 FROM files WHERE id = ? AND deleted = 0";

int store_file_info(store *s, int64_t id, char status[32], char path[STORE_PATH]) {
    int rc = STORE_ENOTFOUND;
    RLOCK();
    sqlite3_stmt *st = q(s, SQL_FILE_INFO, "i", id);
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        col_copy(st, 0, status, 32);
        char sha[80];
        col_copy(st, 1, sha, sizeof sha);
        blob_path(s, sha, path);
        rc = STORE_OK;
    }
    if (st) sqlite3_reset(st);
    RUNLOCK();
    return rc;
}

static const char SQL_FILE_DINFO[] =
    "SELECT json_extract(validation, '$.dataset_info') FROM files WHERE id = ? AND deleted = 0";

json_t *store_file_dataset_info(store *s, int64_t id) {
    json_t *v = NULL;
    RLOCK();
    sqlite3_stmt *st = q(s, SQL_FILE_DINFO, "i", id);
    if (st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) v = col_json(st, 0);
    if (st) sqlite3_reset(st);
    RUNLOCK();
    if (json_is_null(v)) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

static const char SQL_FILE_USER[] =
    "SELECT id FROM jobs WHERE status NOT IN ('succeeded','failed','cancelled')"
    " AND (training_file = ?1 OR validation_file = ?1 OR EXISTS (SELECT 1 FROM"
    " json_each(jobs.request, '$.training_files') AS f WHERE json_extract(f.value, '$.file') = ?1)) LIMIT 1";
static const char SQL_FILE_DEL[] = "UPDATE files SET deleted = 1 WHERE id = ? AND deleted = 0 RETURNING sha256";
static const char SQL_FILE_SHA_USED[] = "SELECT count(*) FROM files WHERE sha256 = ? AND deleted = 0";

int store_file_delete(store *s, int64_t id, int64_t *user) {
    char sha[80] = "";
    LOCK();
    sqlite3_stmt *st = q(s, SQL_FILE_USER, "t", api_id(API_ID_FILE, id).s);
    int rc = STORE_OK;
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        *user = sqlite3_column_int64(st, 0);
        rc = STORE_EINUSE;
    }
    if (st) sqlite3_reset(st);
    if (!rc) {
        st = q(s, SQL_FILE_DEL, "i", id);
        if (st && sqlite3_step(st) == SQLITE_ROW) col_copy(st, 0, sha, sizeof sha);
        else rc = STORE_ENOTFOUND;
        if (st) sqlite3_reset(st);
    }
    int used = 1;
    if (!rc && (st = q(s, SQL_FILE_SHA_USED, "t", sha)) && sqlite3_step(st) == SQLITE_ROW)
        used = sqlite3_column_int(st, 0) > 0;
    if (st) sqlite3_reset(st);
    UNLOCK();
    if (!rc) objects_changed(s); /* a job's result_files may have lost it */
    if (!rc && !used) {
        char path[STORE_PATH];
        blob_path(s, sha, path);
        unlink(path);
    }
    return rc;
}

/* ---- models ------------------------------------------------------------------------ */

static const char SQL_MODEL_PUT[] =
    "INSERT INTO models(name, path, kind, base_model, owned_by, job_id, created_at, architecture, parameters,"
    " has_score_head, status, error, source, info) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(name) DO"
    " UPDATE SET path=excluded.path, kind=excluded.kind, base_model=excluded.base_model,"
    " owned_by=excluded.owned_by, job_id=excluded.job_id, architecture=excluded.architecture,"
    " parameters=excluded.parameters, has_score_head=excluded.has_score_head, status=excluded.status,"
    " error=excluded.error, source=excluded.source, info=excluded.info";

int store_model_put(store *s, const store_model *m) {
    LOCK();
    int rc = exec_st(s, q(s, SQL_MODEL_PUT, "tttttiitiitttt", m->name, m->path, m->kind, m->base[0] ? m->base : NULL,
                          m->owned_by, m->job_id ? m->job_id : (int64_t)0, m->created_at ? m->created_at : now_s(),
                          m->arch, m->params, (int64_t)m->has_score, m->status[0] ? m->status : "ready",
                          m->error[0] ? m->error : NULL, m->source[0] ? m->source : NULL,
                          m->info[0] ? m->info : NULL));
    feed_bump(s);
    UNLOCK();
    return rc;
}

#define MODEL_COLS                                                                                        \
    "name, path, kind, base_model, owned_by, job_id, architecture, parameters, has_score_head, created_at," \
    " id, status, error, source, info"
static const char SQL_MODEL_GET[] = "SELECT " MODEL_COLS " FROM models WHERE name = ?";

static void model_row(sqlite3_stmt *st, store_model *m) {
    memset(m, 0, sizeof *m);
    col_copy(st, 0, m->name, sizeof m->name);
    col_copy(st, 1, m->path, sizeof m->path);
    col_copy(st, 2, m->kind, sizeof m->kind);
    col_copy(st, 3, m->base, sizeof m->base);
    col_copy(st, 4, m->owned_by, sizeof m->owned_by);
    m->job_id = sqlite3_column_int64(st, 5);
    col_copy(st, 6, m->arch, sizeof m->arch);
    m->params = sqlite3_column_int64(st, 7);
    m->has_score = sqlite3_column_int(st, 8);
    m->created_at = sqlite3_column_int64(st, 9);
    col_copy(st, 11, m->status, sizeof m->status);
    col_copy(st, 12, m->error, sizeof m->error);
    col_copy(st, 13, m->source, sizeof m->source);
    col_copy(st, 14, m->info, sizeof m->info);
}

int store_model_get(store *s, const char *name, store_model *out) {
    RLOCK();
    sqlite3_stmt *st = q(s, SQL_MODEL_GET, "t", name);
    int rc = STORE_ENOTFOUND;
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        model_row(st, out);
        rc = STORE_OK;
    }
    if (st) sqlite3_reset(st);
    RUNLOCK();
    return rc;
}

static const char SQL_MODEL_USERS[] =
    "SELECT id FROM jobs WHERE status NOT IN ('succeeded','failed','cancelled') AND (model = ?1 OR ref_model = ?1"
    " OR instr(coalesce(models_used, ''), '|' || ?1 || '|') > 0) ORDER BY id";

/* Ids of the jobs (not final) using model `name`, at most cap, into ids
 * (locked). Returns how many there are (which may be more than cap). */
static int model_users(store *s, const char *name, int64_t *ids, int cap) {
    int n = 0;
    sqlite3_stmt *st = q(s, SQL_MODEL_USERS, "t", name);
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        if (n < cap) ids[n] = sqlite3_column_int64(st, 0);
        n++;
    }
    if (st) sqlite3_reset(st);
    return n;
}

/* Appends the model row st is on. */
static void model_push(store_rows *r, sqlite3_stmt *st) {
    store_model_row *m = rows_push(r, sizeof *m);
    if (m) model_row(st, &m->m);
}

/* Fills in the users of r's models (locked; after the models' statement
 * is done with). */
static void models_users(store *s, store_rows *r) {
    for (int i = 0; i < r->n; i++) {
        store_model_row *m = (store_model_row *)r->v + i;
        sqlite3_stmt *st = q(s, SQL_MODEL_USERS, "t", m->m.name);
        int cap = 0;
        int64_t *ids = NULL;
        while (st && sqlite3_step(st) == SQLITE_ROW) ids = ids_push(r, ids, &m->n_users, &cap, sqlite3_column_int64(st, 0));
        if (st) sqlite3_reset(st);
        m->users = ids;
    }
}

int store_model_read(store *s, const char *name, store_rows *out) {
    memset(out, 0, sizeof *out);
    RLOCK();
    sqlite3_stmt *st = q(s, SQL_MODEL_GET, "t", name);
    int rc = st ? STORE_ENOTFOUND : STORE_EIO;
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        model_push(out, st);
        rc = STORE_OK;
    }
    if (st) sqlite3_reset(st);
    if (!rc) models_users(s, out);
    RUNLOCK();
    return rows_done(out, rc);
}

static const char SQL_MODEL_PAGE[] =
    "SELECT " MODEL_COLS " FROM models WHERE id < coalesce((SELECT id FROM models WHERE name = ?1), 9223372036854775807)"
    " ORDER BY id DESC LIMIT ?2";

int store_model_page(store *s, const char *after, int limit, store_rows *out) {
    memset(out, 0, sizeof *out);
    RLOCK();
    sqlite3_stmt *st = q(s, SQL_MODEL_PAGE, "ti", after, (int64_t)limit + 1);
    while (st && out->n <= limit && sqlite3_step(st) == SQLITE_ROW) model_push(out, st);
    if (st) sqlite3_reset(st);
    rows_page(out, limit);
    models_users(s, out);
    RUNLOCK();
    return rows_done(out, STORE_OK);
}

static const char SQL_MODEL_DEL[] = "DELETE FROM models WHERE name = ?";

int store_model_delete(store *s, const char *name, int64_t users[STORE_USERS_MAX], int *n_users) {
    LOCK();
    int n = model_users(s, name, users, STORE_USERS_MAX), rc;
    if (n) {
        *n_users = n < STORE_USERS_MAX ? n : STORE_USERS_MAX;
        rc = STORE_EINUSE;
    } else {
        rc = exec_st(s, q(s, SQL_MODEL_DEL, "t", name));
        if (!rc && sqlite3_changes(s->db) == 0) rc = STORE_ENOTFOUND;
    }
    UNLOCK();
    return rc;
}

/* ---- jobs -------------------------------------------------------------------------- */

static const char SQL_JOB_INS[] =
    "INSERT INTO jobs(method, model, ref_model, training_file, validation_file, task, request, spec,"
    " hyperparameters, status, priority, suffix, metadata, from_checkpoint, seed, created_at, memory_bytes,"
    " resume_dir, models_used) VALUES (?,?,?,?,?,?,?,?,?,'validating_files',?,?,?,?,?,?,?,?,?)";
static const char SQL_JOB_OUTDIR[] = "UPDATE jobs SET output_dir = ? WHERE id = ?";
static const char SQL_EVENT_INS[] =
    "INSERT INTO events(job_id, seq, created_at, level, type, message, data, status) VALUES (?,?,?,?,?,?,?,?)";

/* Adds an event (locked, inside a transaction). A status event takes two
 * seqs: the event item and the status item. */
static int event_add(store *s, int64_t job, const char *level, const char *type, const char *data,
                     const char *status, const char *msg) {
    int64_t seq = next_seq(s, job, status ? 2 : 1);
    if (!seq) return STORE_EIO;
    return exec_st(s, q(s, SQL_EVENT_INS, "iiittttt", job, seq, now_s(), level, type, msg, data, status));
}

int store_job_create(store *s, const store_job_new *j, int64_t *id) {
    char *task = dump(j->task), *req = dump(j->request), *spec = dump(j->spec), *hp = dump(j->hyperparameters),
         *md = dump(j->metadata);
    /* "|name|name|": a model is in use while a live job's list holds it */
    char used[4096] = "|";
    for (size_t i = 0; json_is_array(j->models_used) && i < json_array_size(j->models_used); i++) {
        size_t len = strlen(used);
        snprintf(used + len, sizeof used - len, "%s|", json_string_value(json_array_get(j->models_used, i)));
    }
    LOCK();
    int rc = tx_begin(s);
    if (!rc)
        rc = exec_st(s, q(s, SQL_JOB_INS, "ttttttttti" "tttiiit" "t", j->method, j->model, j->ref_model,
                          j->training_file, j->validation_file, task, req ? req : "{}", spec ? spec : "{}", hp,
                          (int64_t)j->priority, j->suffix, md, j->from_checkpoint, j->seed, now_s(), j->memory_bytes,
                          j->resume_dir, used));
    int64_t jid = rc ? 0 : sqlite3_last_insert_rowid(s->db);
    if (!rc) {
        char dir[STORE_PATH];
        snprintf(dir, sizeof dir, "%s/%s", j->jobs_dir, api_id(API_ID_JOB, jid).s);
        /* the spec's output_dir is filled by the worker from this column */
        rc = exec_st(s, q(s, SQL_JOB_OUTDIR, "ti", dir, jid));
    }
    if (!rc) {
        char msg[160];
        snprintf(msg, sizeof msg, "Created fine-tuning job: %s", api_id(API_ID_JOB, jid).s);
        rc = event_add(s, jid, "info", "status", NULL, "validating_files", msg);
    }
    if (!rc) rc = tx_commit(s);
    else tx_rollback(s);
    if (!rc) {
        *id = jid;
        feed_bump(s);
    }
    UNLOCK();
    free(task);
    free(req);
    free(spec);
    free(hp);
    free(md);
    return rc;
}

static const char SQL_JOB_TRANS[] =
    "UPDATE jobs SET status = ?3,"
    " error_code = CASE WHEN ?4 IS NULL THEN error_code WHEN ?4 = '' THEN NULL ELSE ?4 END,"
    " error_message = CASE WHEN ?5 IS NULL THEN error_message WHEN ?5 = '' THEN NULL ELSE ?5 END,"
    " error_param = CASE WHEN ?6 IS NULL THEN error_param WHEN ?6 = '' THEN NULL ELSE ?6 END,"
    " fine_tuned_model = CASE WHEN ?7 IS NULL THEN fine_tuned_model WHEN ?7 = '' THEN NULL ELSE ?7 END,"
    " resume_dir = CASE WHEN ?8 IS NULL THEN resume_dir WHEN ?8 = '' THEN NULL ELSE ?8 END,"
    " started_at = CASE WHEN ?9 AND started_at IS NULL THEN ?11 ELSE started_at END,"
    " finished_at = CASE WHEN ?10 THEN ?11 ELSE finished_at END,"
    " step = CASE WHEN ?12 >= 0 THEN ?12 ELSE step END,"
    " remaining_s = CASE WHEN ?3 IN ('succeeded','failed','cancelled') THEN NULL ELSE remaining_s END,"
    " spec = CASE WHEN ?13 IS NULL THEN spec ELSE ?13 END,"
    " hyperparameters = CASE WHEN ?13 IS NULL THEN hyperparameters ELSE ?14 END,"
    " memory_bytes = CASE WHEN ?13 IS NULL THEN memory_bytes ELSE ?15 END"
    " WHERE id = ?1 AND instr('|' || ?2 || '|', '|' || status || '|') > 0";
static const char SQL_DROP_METRICS[] = "DELETE FROM metrics WHERE job_id = ? AND step > ?";
static const char SQL_DROP_SAMPLES[] = "DELETE FROM samples WHERE job_id = ? AND step > ?";
static const char SQL_DROP_CKPTS[] = "DELETE FROM checkpoints WHERE job_id = ? AND step > ?";
static const char SQL_DROP_EVALS[] = "DELETE FROM eval_results WHERE job_id = ? AND step > ?";
static const char SQL_JOB_EXISTS[] = "SELECT status FROM jobs WHERE id = ?";

static int transition_locked(store *s, int64_t id, const char *from, const char *to, const char *level,
                             const store_upd *upd, const char *msg) {
    static const store_upd none = STORE_UPD_INIT;
    if (!upd) upd = &none;
    char *spec = dump(upd->spec), *hp = upd->spec ? dump(upd->hyperparameters) : NULL;
    if (upd->spec && !spec) return STORE_EIO;
    int rc = tx_begin(s);
    if (rc) {
        free(spec);
        free(hp);
        return rc;
    }
    rc = exec_st(s, q(s, SQL_JOB_TRANS, "itttttttiiii" "tti", id, from, to, upd->error_code, upd->error_message,
                      upd->error_param, upd->fine_tuned_model, upd->resume_dir, (int64_t)upd->started,
                      (int64_t)upd->finished, now_s(), (int64_t)upd->step, spec, hp, upd->memory_bytes));
    free(spec);
    free(hp);
    if (!rc && sqlite3_changes(s->db) == 0) {
        sqlite3_stmt *st = q(s, SQL_JOB_EXISTS, "i", id);
        rc = st && sqlite3_step(st) == SQLITE_ROW ? STORE_ESTATE : STORE_ENOTFOUND;
        if (st) sqlite3_reset(st);
    }
    if (!rc && upd->step >= 0) {
        /* what a resumed run will log again */
        rc = exec_st(s, q(s, SQL_DROP_METRICS, "ii", id, (int64_t)upd->step));
        if (!rc) rc = exec_st(s, q(s, SQL_DROP_SAMPLES, "ii", id, (int64_t)upd->step));
        if (!rc) rc = exec_st(s, q(s, SQL_DROP_CKPTS, "ii", id, (int64_t)upd->step));
        if (!rc) rc = exec_st(s, q(s, SQL_DROP_EVALS, "ii", id, (int64_t)upd->step));
    }
    if (!rc) {
        char data[96];
        snprintf(data, sizeof data, "{\"status\":\"%s\"}", to);
        rc = event_add(s, id, level, "status", data, to, msg);
    }
    if (!rc) rc = tx_commit(s);
    else tx_rollback(s);
    if (!rc) feed_bump(s);
    return rc;
}

int store_job_transition(store *s, int64_t id, const char *from, const char *to, const char *level,
                         const store_upd *upd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = store_job_transitionv(s, id, from, to, level, upd, fmt, ap);
    va_end(ap);
    return rc;
}

int store_job_transitionv(store *s, int64_t id, const char *from, const char *to, const char *level,
                          const store_upd *upd, const char *fmt, va_list ap) {
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    LOCK();
    int rc = transition_locked(s, id, from, to, level, upd, msg);
    UNLOCK();
    if (!rc) log_info("event=status job=%s status=%s", api_id(API_ID_JOB, id).s, to);
    return rc;
}

int store_job_status(store *s, int64_t id, char stat[32]) {
    RLOCK();
    sqlite3_stmt *st = q(s, SQL_JOB_EXISTS, "i", id);
    int rc = STORE_ENOTFOUND;
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        col_copy(st, 0, stat, 32);
        rc = STORE_OK;
    }
    if (st) sqlite3_reset(st);
    RUNLOCK();
    return rc;
}

static const char SQL_JOB_RUN[] =
    "SELECT spec, resume_dir, output_dir, method, suffix, model, step, elapsed_s, memory_bytes, priority"
    " FROM jobs WHERE id = ?";

int store_job_run_info(store *s, int64_t id, store_run *r) {
    memset(r, 0, sizeof *r);
    RLOCK();
    sqlite3_stmt *st = q(s, SQL_JOB_RUN, "i", id);
    int rc = STORE_ENOTFOUND;
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        r->id = id;
        const char *sp = col_text(st, 0);
        r->spec = strdup(sp ? sp : "{}");
        col_copy(st, 1, r->resume_dir, sizeof r->resume_dir);
        col_copy(st, 2, r->output_dir, sizeof r->output_dir);
        col_copy(st, 3, r->method, sizeof r->method);
        col_copy(st, 4, r->suffix, sizeof r->suffix);
        col_copy(st, 5, r->model, sizeof r->model);
        r->step = (long)sqlite3_column_int64(st, 6);
        r->elapsed_s = sqlite3_column_double(st, 7);
        r->memory_bytes = sqlite3_column_int64(st, 8);
        r->priority = sqlite3_column_int(st, 9);
        rc = r->spec ? STORE_OK : STORE_EIO;
    }
    if (st) sqlite3_reset(st);
    RUNLOCK();
    return rc;
}

void store_run_deinit(store_run *r) {
    free(r->spec);
    r->spec = NULL;
}

static const char SQL_QUEUE[] =
    "SELECT id, memory_bytes FROM jobs WHERE status = 'queued' ORDER BY priority DESC, id ASC LIMIT ?";

int store_queue(store *s, int64_t *ids, int64_t *mem, int n) {
    int k = 0;
    RLOCK();
    sqlite3_stmt *st = q(s, SQL_QUEUE, "i", (int64_t)n);
    while (st && k < n && sqlite3_step(st) == SQLITE_ROW) {
        ids[k] = sqlite3_column_int64(st, 0);
        mem[k++] = sqlite3_column_int64(st, 1);
    }
    if (st) sqlite3_reset(st);
    RUNLOCK();
    return k;
}

static const char SQL_PROGRESS[] =
    "UPDATE jobs SET step = ?2, total_steps = ?3, epoch = ?4, trained_tokens = ?5,"
    " tokens_per_second = coalesce(?6, tokens_per_second), elapsed_s = ?7, remaining_s = ?8 WHERE id = ?1";

int store_job_progress(store *s, int64_t id, long step, long total, double epoch, double tokens, double tps,
                       double elapsed_s, double remaining_s) {
    LOCK();
    int rc = exec_st(s, q(s, SQL_PROGRESS, "iiidddd" "d", id, (int64_t)step, (int64_t)total, epoch, tokens,
                          tps, elapsed_s, remaining_s));
    UNLOCK();
    return rc;
}

int store_job_event(store *s, int64_t id, const char *level, const char *type, const json_t *data,
                    const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char *d = dump(data);
    LOCK();
    int rc = tx_begin(s);
    if (!rc) rc = event_add(s, id, level, type, d, NULL, msg);
    if (!rc) rc = tx_commit(s);
    else tx_rollback(s);
    if (!rc) feed_bump(s);
    UNLOCK();
    free(d);
    return rc;
}

static const char SQL_METRIC_INS[] =
    "INSERT OR REPLACE INTO metrics(job_id, step, seq, epoch, created_at, name, value) VALUES (?,?,?,?,?,?,?)";

int store_job_metrics_add(store *s, int64_t id, long step, double epoch, const char *const *names,
                          const double *values, int n) {
    LOCK();
    int rc = tx_begin(s);
    int64_t seq = rc ? 0 : next_seq(s, id, 1);
    if (!seq) rc = STORE_EIO;
    int64_t t = now_s();
    for (int i = 0; !rc && i < n; i++)
        rc = exec_st(s, q(s, SQL_METRIC_INS, "iiiditd", id, (int64_t)step, seq, epoch, t, names[i], values[i]));
    if (!rc) rc = tx_commit(s);
    else tx_rollback(s);
    if (!rc) feed_bump(s);
    UNLOCK();
    return rc;
}

static const char SQL_SAMPLE_INS[] =
    "INSERT INTO samples(job_id, step, seq, created_at, prompt, completion, reward) VALUES (?,?,?,?,?,?,?)";

int store_job_sample_add(store *s, int64_t id, long step, const char *prompt, const char *completion,
                         double reward) {
    LOCK();
    int rc = tx_begin(s);
    int64_t seq = rc ? 0 : next_seq(s, id, 1);
    if (!seq) rc = STORE_EIO;
    if (!rc) rc = exec_st(s, q(s, SQL_SAMPLE_INS, "iiiittd", id, (int64_t)step, seq, now_s(), prompt, completion, reward));
    if (!rc) rc = tx_commit(s);
    else tx_rollback(s);
    if (!rc) feed_bump(s);
    UNLOCK();
    return rc;
}

static const char SQL_EVAL_INS[] =
    "INSERT OR REPLACE INTO eval_results(job_id, step, task, role, created_at, result) VALUES (?,?,?,?,?,?)";

int store_job_eval_result_add(store *s, int64_t id, long step, const json_t *result) {
    const char *task = json_string_value(json_object_get(result, "task"));
    const char *role = json_string_value(json_object_get(result, "model"));
    char *js = dump(result);
    if (!task || !role || !js) {
        free(js);
        return STORE_EIO;
    }
    LOCK();
    int rc = exec_st(s, q(s, SQL_EVAL_INS, "iittit", id, (int64_t)step, task, role, now_s(), js));
    UNLOCK();
    free(js);
    return rc;
}

static const char SQL_STEP_METRICS[] = "SELECT name, value FROM metrics WHERE job_id = ? AND step = ? ORDER BY name";
static const char SQL_CKPT_INS[] =
    "INSERT OR REPLACE INTO checkpoints(job_id, step, path, created_at, metrics) VALUES (?,?,?,?,?)";
static const char SQL_RESUME_SET[] = "UPDATE jobs SET resume_dir = ? WHERE id = ?";

/* {name: value} of a job's step (locked). */
static json_t *step_metrics(store *s, int64_t id, long step) {
    json_t *m = json_object();
    sqlite3_stmt *st = q(s, SQL_STEP_METRICS, "ii", id, (int64_t)step);
    while (st && sqlite3_step(st) == SQLITE_ROW) json_object_set_new(m, col_text(st, 0), col_real_json(st, 1));
    if (st) sqlite3_reset(st);
    return m;
}

int store_job_checkpoint_add(store *s, int64_t id, long step, const char *path) {
    LOCK();
    int rc = tx_begin(s);
    json_t *m = rc ? NULL : step_metrics(s, id, step);
    char *ms = dump(m);
    json_decref(m);
    if (!rc) rc = exec_st(s, q(s, SQL_CKPT_INS, "iitit", id, (int64_t)step, path, now_s(), ms));
    /* the next run of this job starts here */
    if (!rc) rc = exec_st(s, q(s, SQL_RESUME_SET, "ti", path, id));
    if (!rc) {
        char msg[160], data[64];
        snprintf(msg, sizeof msg, "Checkpoint written at step %ld", step);
        snprintf(data, sizeof data, "{\"step\":%ld}", step);
        rc = event_add(s, id, "info", "checkpoint", data, NULL, msg);
    }
    if (!rc) rc = tx_commit(s);
    else tx_rollback(s);
    if (!rc) feed_bump(s);
    UNLOCK();
    free(ms);
    return rc;
}

static const char SQL_CKPT_ALL[] = "SELECT step, path FROM checkpoints WHERE job_id = ? ORDER BY step DESC";
static const char SQL_CKPT_DEL1[] = "DELETE FROM checkpoints WHERE job_id = ? AND step = ?";

json_t *store_job_checkpoints_prune(store *s, int64_t id, int keep) {
    json_t *gone = json_array(), *steps = json_array();
    LOCK();
    sqlite3_stmt *st = q(s, SQL_CKPT_ALL, "i", id);
    int n = 0;
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        const char *p = col_text(st, 1), *b = p ? strrchr(p, '/') : NULL;
        if (!b || strncmp(b + 1, "checkpoint-", 11)) continue; /* the output folder */
        if (++n > keep) {
            json_array_append_new(gone, json_string(p));
            json_array_append_new(steps, json_integer(sqlite3_column_int64(st, 0)));
        }
    }
    if (st) sqlite3_reset(st);
    int rc = json_array_size(steps) ? tx_begin(s) : STORE_OK;
    for (size_t i = 0; !rc && i < json_array_size(steps); i++)
        rc = exec_st(s, q(s, SQL_CKPT_DEL1, "ii", id, (int64_t)json_integer_value(json_array_get(steps, i))));
    if (json_array_size(steps)) {
        if (!rc) rc = tx_commit(s);
        else tx_rollback(s);
    }
    UNLOCK();
    json_decref(steps);
    if (rc) {
        json_decref(gone);
        return NULL;
    }
    return gone;
}

static const char SQL_JOB_DEL_INFO[] = "SELECT status, output_dir, fine_tuned_model FROM jobs WHERE id = ?";
static const char SQL_JOB_DEL_USERS[] =
    "SELECT id FROM jobs WHERE status NOT IN ('succeeded','failed','cancelled') AND id <> ?1 AND ("
    "(?2 IS NOT NULL AND (model = ?2 OR ref_model = ?2 OR instr(coalesce(models_used,''), '|' || ?2 || '|') > 0))"
    " OR instr(coalesce(models_used,''), '|' || ?3 || '|') > 0 OR instr(coalesce(models_used,''), '|' || ?3 || ':') > 0"
    " OR model = ?3 OR model LIKE ?3 || ':%' OR from_checkpoint = ?3 OR from_checkpoint LIKE ?3 || ':%') ORDER BY id";
static const char *const SQL_JOB_DEL[] = {
    "DELETE FROM metrics WHERE job_id = ?", "DELETE FROM samples WHERE job_id = ?",
    "DELETE FROM events WHERE job_id = ?", "DELETE FROM checkpoints WHERE job_id = ?",
    "DELETE FROM eval_results WHERE job_id = ?",
    "DELETE FROM models WHERE job_id = ?", "DELETE FROM jobs WHERE id = ?",
};

int store_job_delete(store *s, int64_t id, char dir[STORE_PATH], int64_t users[STORE_USERS_MAX], int *n_users) {
    char status[32] = "", ft[256] = "";
    *n_users = 0;
    LOCK();
    int rc = STORE_ENOTFOUND;
    sqlite3_stmt *st = q(s, SQL_JOB_DEL_INFO, "i", id);
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        col_copy(st, 0, status, sizeof status);
        col_copy(st, 1, dir, STORE_PATH);
        col_copy(st, 2, ft, sizeof ft);
        rc = store_status_final(status) ? STORE_OK : STORE_ESTATE;
    }
    if (st) sqlite3_reset(st);
    /* models_used spells a job's output as its public id */
    if (!rc && (st = q(s, SQL_JOB_DEL_USERS, "itt", id, ft[0] ? ft : NULL, api_id(API_ID_JOB, id).s))) {
        while (*n_users < STORE_USERS_MAX && sqlite3_step(st) == SQLITE_ROW) {
            users[(*n_users)++] = sqlite3_column_int64(st, 0);
            rc = STORE_EINUSE;
        }
        sqlite3_reset(st);
    }
    if (!rc) rc = tx_begin(s);
    for (size_t i = 0; !rc && i < sizeof SQL_JOB_DEL / sizeof *SQL_JOB_DEL; i++)
        rc = exec_st(s, q(s, SQL_JOB_DEL[i], "i", id));
    if (rc == STORE_OK) {
        rc = tx_commit(s);
        if (!rc) feed_bump(s);
    } else if (rc == STORE_EIO) {
        tx_rollback(s);
    }
    UNLOCK();
    if (!rc) objects_changed(s);
    return rc;
}

static const char SQL_CKPT_AT[] = "SELECT path, step FROM checkpoints WHERE job_id = ?1 AND (?2 < 0 OR step = ?2)"
                                  " ORDER BY step DESC LIMIT 1";

int store_job_checkpoint_path(store *s, int64_t id, long step, char path[STORE_PATH], long *step_out) {
    RLOCK();
    sqlite3_stmt *st = q(s, SQL_CKPT_AT, "ii", id, (int64_t)step);
    int rc = STORE_ENOTFOUND;
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        col_copy(st, 0, path, STORE_PATH);
        if (step_out) *step_out = (long)sqlite3_column_int64(st, 1);
        rc = STORE_OK;
    }
    if (st) sqlite3_reset(st);
    RUNLOCK();
    return rc;
}

/* ---- job rows ---------------------------------------------------------------------- */

static const char SQL_JOB_GET[] =
    "SELECT id, created_at, started_at, finished_at, model, fine_tuned_model, suffix, method, status, priority,"
    " training_file, validation_file, task, hyperparameters, seed, metadata, step, total_steps, epoch,"
    " elapsed_s, remaining_s, tokens_per_second, trained_tokens, error_code, error_message, error_param,"
    " from_checkpoint, json_extract(request, '$.training_files'), json_extract(request, '$.chat_template'),"
    " json_extract(request, '$.resources.processes'), json_extract(request, '$.resources.threads_per_process'),"
    " json_extract(request, '$.distributed')"
    " FROM jobs WHERE id = ?";
static const char SQL_QPOS[] =
    "SELECT count(*) FROM jobs WHERE status = 'queued' AND (priority > ?1 OR (priority = ?1 AND id < ?2))";
static const char SQL_RESULT_FILES[] = "SELECT id FROM files WHERE job_id = ? AND deleted = 0 ORDER BY id";
static const char SQL_LAST_STEP[] = "SELECT max(step) FROM metrics WHERE job_id = ?";

/* The metrics of a job's step, by name, into m in r's memory (locked). */
static void step_metric_rows(store *s, store_rows *r, int64_t id, long step, store_metrics_row *m) {
    int cap = 0;
    sqlite3_stmt *st = q(s, SQL_STEP_METRICS, "ii", id, (int64_t)step);
    while (st && sqlite3_step(st) == SQLITE_ROW) metric_push(r, m, &cap, col_str(r, st, 0), col_real(st, 1));
    if (st) sqlite3_reset(st);
}

/* The model a result measures is named from its job's columns (objects.c). */
static const char SQL_EVALS[] =
    "SELECT r.step, r.task, r.role, r.created_at, r.result, j.model, j.fine_tuned_model, j.method, j.step,"
    " j.status, json_extract(j.request, '$.model_b') FROM eval_results r JOIN jobs j ON j.id = r.job_id"
    " WHERE r.job_id = ?1 AND (?2 = 0 OR r.step = (SELECT max(step) FROM eval_results x"
    "  WHERE x.job_id = r.job_id AND x.task = r.task AND x.role = r.role))"
    " ORDER BY r.step, r.task, r.role";

/* Eval results of a job (locked), an array in r's memory; latest: only
 * each task and role's last. */
static store_eval_row *eval_rows(store *s, store_rows *r, int64_t id, int latest, int *n) {
    store_eval_row *v = NULL;
    int cap = 0;
    *n = 0;
    sqlite3_stmt *st = q(s, SQL_EVALS, "ii", id, (int64_t)latest);
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        store_eval_row *a = arr_room(r, v, *n, &cap, sizeof *v);
        if (!a) break;
        v = a;
        store_eval_row *e = &v[(*n)++];
        e->job_id = id;
        e->step = (long)sqlite3_column_int64(st, 0);
        e->role = col_str(r, st, 2);
        e->created_at = sqlite3_column_int64(st, 3);
        e->result = col_str(r, st, 4);
        e->job_model = col_str(r, st, 5);
        e->job_fine_tuned_model = col_str(r, st, 6);
        e->job_method = col_str(r, st, 7);
        e->job_step = (long)sqlite3_column_int64(st, 8);
        e->job_status = col_str(r, st, 9);
        e->job_model_b = col_str(r, st, 10);
    }
    if (st) sqlite3_reset(st);
    return v;
}

/* Fills j (whose id is set) from the database (locked): STORE_OK or
 * STORE_ENOTFOUND. */
static int job_row(store *s, store_rows *r, store_job_row *j) {
    int64_t id = j->id;
    sqlite3_stmt *st = q(s, SQL_JOB_GET, "i", id);
    if (!st || sqlite3_step(st) != SQLITE_ROW) {
        if (st) sqlite3_reset(st);
        return STORE_ENOTFOUND;
    }
    j->loaded = 1;
    j->created_at = sqlite3_column_int64(st, 1);
    j->started_at = sqlite3_column_int64(st, 2);
    j->finished_at = sqlite3_column_int64(st, 3);
    j->model = col_str(r, st, 4);
    j->fine_tuned_model = col_str(r, st, 5);
    j->suffix = col_str(r, st, 6);
    j->method = col_str(r, st, 7);
    j->status = col_str(r, st, 8);
    if (!j->status) j->status = "";
    j->priority = sqlite3_column_int(st, 9);
    j->training_file = col_str(r, st, 10);
    j->validation_file = col_str(r, st, 11);
    j->task = col_str(r, st, 12);
    j->hyperparameters = col_str(r, st, 13);
    j->seed = sqlite3_column_int64(st, 14);
    j->metadata = col_str(r, st, 15);
    j->step = (long)sqlite3_column_int64(st, 16);
    j->total_steps = (long)sqlite3_column_int64(st, 17);
    j->epoch = sqlite3_column_double(st, 18);
    j->elapsed_s = sqlite3_column_double(st, 19);
    j->remaining_s = col_real(st, 20);
    j->tokens_per_second = sqlite3_column_double(st, 21);
    j->trained_tokens = sqlite3_column_double(st, 22);
    j->error_code = col_str(r, st, 23);
    j->error_message = col_str(r, st, 24);
    j->error_param = col_str(r, st, 25);
    j->from_checkpoint = col_str(r, st, 26);
    j->training_files = col_str(r, st, 27);
    j->chat_template = col_str(r, st, 28);
    j->processes = sqlite3_column_type(st, 29) == SQLITE_INTEGER ? sqlite3_column_int(st, 29) : 1;
    j->threads_per_process = sqlite3_column_type(st, 30) == SQLITE_INTEGER ? sqlite3_column_int(st, 30) : -1;
    j->distributed = col_str(r, st, 31);
    sqlite3_reset(st);
    if (!strcmp(j->status, "queued") && (st = q(s, SQL_QPOS, "ii", (int64_t)j->priority, id)) &&
        sqlite3_step(st) == SQLITE_ROW)
        j->queue_position = sqlite3_column_int64(st, 0) + 1;
    if (st) sqlite3_reset(st);
    int cap = 0;
    int64_t *files = NULL;
    st = q(s, SQL_RESULT_FILES, "i", id);
    while (st && sqlite3_step(st) == SQLITE_ROW) files = ids_push(r, files, &j->n_result_files, &cap, sqlite3_column_int64(st, 0));
    if (st) sqlite3_reset(st);
    j->result_files = files;
    if ((st = q(s, SQL_LAST_STEP, "i", id)) && sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_type(st, 0) != SQLITE_NULL) {
        long ls = (long)sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        store_metrics_row m = {.step = ls};
        step_metric_rows(s, r, id, ls, &m);
        j->has_latest_metrics = 1;
        j->latest_metrics = m.m;
        j->n_latest_metrics = m.n;
    }
    if (st) sqlite3_reset(st);
    j->evals = eval_rows(s, r, id, 1, &j->n_evals);
    return STORE_OK;
}

int store_job_read(store *s, int64_t id, store_rows *out) {
    memset(out, 0, sizeof *out);
    store_job_row *j = rows_push(out, sizeof *j);
    if (!j) return rows_done(out, STORE_EIO);
    j->id = id;
    RLOCK();
    int rc = job_row(s, out, j);
    RUNLOCK();
    return rows_done(out, rc);
}

static const char SQL_JOB_PAGE[] =
    "SELECT id FROM jobs WHERE id < ?1 AND (?2 IS NULL OR status = ?2) ORDER BY id DESC LIMIT ?3";

int store_job_page(store *s, int64_t after, int limit, const char *status, int (*want)(void *ud, int64_t id),
                   void *ud, store_rows *out) {
    memset(out, 0, sizeof *out);
    RLOCK();
    sqlite3_stmt *st = q(s, SQL_JOB_PAGE, "iti", after > 0 ? after : INT64_MAX, status, (int64_t)limit + 1);
    while (st && out->n <= limit && sqlite3_step(st) == SQLITE_ROW) {
        store_job_row *j = rows_push(out, sizeof *j);
        if (j) j->id = sqlite3_column_int64(st, 0);
    }
    if (st) sqlite3_reset(st);
    rows_page(out, limit);
    int k = 0;
    for (int i = 0; i < out->n; i++) {
        store_job_row *j = (store_job_row *)out->v + i;
        /* a job deleted between the two statements is left out */
        if ((want && !want(ud, j->id)) || job_row(s, out, j) == STORE_OK) ((store_job_row *)out->v)[k++] = *j;
    }
    out->n = k;
    RUNLOCK();
    return rows_done(out, STORE_OK);
}

/* ---- what jobs logged -------------------------------------------------------------- */

/* One row of a job's page from st's columns into row (of r's array). */
typedef void (*page_fill)(store_rows *r, sqlite3_stmt *st, void *row, int64_t job_id);

/* A page of job id's rows, each of size bytes made by fill: sql takes the
 * job (?1), the key the page starts after (?2) and limit + 1 (?3). */
static int job_page(store *s, const char *sql, int64_t id, int64_t after, int limit, size_t size, page_fill fill,
                    store_rows *out) {
    memset(out, 0, sizeof *out);
    RLOCK();
    sqlite3_stmt *st = q(s, sql, "iii", id, after, (int64_t)limit + 1);
    void *row;
    while (st && sqlite3_step(st) == SQLITE_ROW && (row = rows_push(out, size))) fill(out, st, row, id);
    if (st) sqlite3_reset(st);
    RUNLOCK();
    rows_page(out, limit);
    return rows_done(out, STORE_OK);
}

static const char SQL_EVENTS[] =
    "SELECT id, created_at, level, message, type, data FROM events WHERE job_id = ?1 AND id < ?2"
    " ORDER BY id DESC LIMIT ?3";

/* An event row from st's columns 0..5 into memory of r. */
static store_event_row *event_row(store_rows *r, sqlite3_stmt *st, store_event_row *e) {
    if (!e) return NULL;
    e->id = sqlite3_column_int64(st, 0);
    e->created_at = sqlite3_column_int64(st, 1);
    e->level = col_str(r, st, 2);
    e->message = col_str(r, st, 3);
    e->type = col_str(r, st, 4);
    e->data = col_str(r, st, 5);
    return e;
}

static void fill_event(store_rows *r, sqlite3_stmt *st, void *row, int64_t job_id) {
    (void)job_id;
    event_row(r, st, row);
}

int store_job_event_page(store *s, int64_t id, int64_t after, int limit, store_rows *out) {
    return job_page(s, SQL_EVENTS, id, after > 0 ? after : INT64_MAX, limit, sizeof(store_event_row), fill_event,
                    out);
}

static int key_wanted(const char *keys, const char *name) {
    if (!keys || !*keys) return 1;
    size_t n = strlen(name);
    for (const char *p = keys; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, name, n)) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

static const char SQL_METRICS[] =
    "SELECT step, epoch, created_at, name, value FROM metrics WHERE job_id = ? AND step > ? ORDER BY step, name";

int store_job_metric_rows(store *s, int64_t id, const char *keys, long after_step, store_rows *out) {
    memset(out, 0, sizeof *out);
    store_metrics_row *cur = NULL;
    int cap = 0;
    RLOCK();
    sqlite3_stmt *st = q(s, SQL_METRICS, "ii", id, (int64_t)after_step);
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        long step = (long)sqlite3_column_int64(st, 0);
        const char *name = col_text(st, 3);
        if (!name || !key_wanted(keys, name)) continue;
        if (!cur || step != cur->step) {
            if (!(cur = rows_push(out, sizeof *cur))) break;
            cur->step = step;
            cur->epoch = sqlite3_column_double(st, 1);
            cur->created_at = sqlite3_column_int64(st, 2);
            cap = 0;
        }
        metric_push(out, cur, &cap, col_str(out, st, 3), col_real(st, 4));
    }
    if (st) sqlite3_reset(st);
    RUNLOCK();
    return rows_done(out, STORE_OK);
}

static const char SQL_SAMPLES[] =
    "SELECT step, created_at, prompt, completion, reward, id FROM samples WHERE job_id = ? AND step > ?"
    " ORDER BY step, id LIMIT ?";

/* A sample row from st's columns 0..4 into memory of r. */
static store_sample_row *sample_row(store_rows *r, sqlite3_stmt *st, store_sample_row *m) {
    if (!m) return NULL;
    m->step = (long)sqlite3_column_int64(st, 0);
    m->created_at = sqlite3_column_int64(st, 1);
    m->prompt = col_str(r, st, 2);
    m->completion = col_str(r, st, 3);
    m->reward = col_real(st, 4);
    return m;
}

static void fill_sample(store_rows *r, sqlite3_stmt *st, void *row, int64_t job_id) {
    (void)job_id;
    sample_row(r, st, row);
}

int store_job_sample_page(store *s, int64_t id, long after_step, int limit, store_rows *out) {
    return job_page(s, SQL_SAMPLES, id, after_step, limit, sizeof(store_sample_row), fill_sample, out);
}

int store_job_eval_rows(store *s, int64_t id, store_rows *out) {
    memset(out, 0, sizeof *out);
    LOCK();
    int n = 0;
    store_eval_row *v = eval_rows(s, out, id, 0, &n);
    UNLOCK();
    /* the rows are in out's memory: hand them over as its array */
    if (n && (out->v = malloc((size_t)n * sizeof *v))) {
        memcpy(out->v, v, (size_t)n * sizeof *v);
        out->n = out->cap = n;
    } else if (n) {
        out->oom = 1;
    }
    return rows_done(out, STORE_OK);
}

static const char SQL_CKPTS[] =
    "SELECT id, created_at, step, metrics FROM checkpoints WHERE job_id = ?1 AND id > ?2 ORDER BY step, id LIMIT ?3";

static void fill_checkpoint(store_rows *r, sqlite3_stmt *st, void *row, int64_t job_id) {
    store_checkpoint_row *c = row;
    c->id = sqlite3_column_int64(st, 0);
    c->job_id = job_id;
    c->created_at = sqlite3_column_int64(st, 1);
    c->step = (long)sqlite3_column_int64(st, 2);
    c->metrics = col_str(r, st, 3);
}

int store_job_checkpoint_page(store *s, int64_t id, int64_t after, int limit, store_rows *out) {
    return job_page(s, SQL_CKPTS, id, after, limit, sizeof(store_checkpoint_row), fill_checkpoint, out);
}

/* ---- the live feed ---------------------------------------------------------------------- */

static const char SQL_FEED_EV[] =
    "SELECT id, created_at, level, message, type, data, seq, status FROM events WHERE job_id = ?1 AND seq + 1 > ?2"
    " ORDER BY seq LIMIT ?3";
static const char SQL_FEED_MET[] =
    "SELECT DISTINCT seq, step FROM metrics WHERE job_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3";
static const char SQL_FEED_MROW[] =
    "SELECT step, epoch, created_at, name, value FROM metrics WHERE job_id = ? AND step = ? ORDER BY name";
static const char SQL_FEED_SAM[] =
    "SELECT step, created_at, prompt, completion, reward, id, seq FROM samples WHERE job_id = ?1 AND seq > ?2"
    " ORDER BY seq LIMIT ?3";
static const char SQL_JOB_SEQ[] = "SELECT last_seq, status FROM jobs WHERE id = ?";

static store_feed_item *feed_push(store_rows *r, int64_t seq, store_feed_kind kind) {
    store_feed_item *it = rows_push(r, sizeof *it);
    if (it) {
        it->seq = seq;
        it->kind = kind;
    }
    return it;
}

static int item_cmp(const void *a, const void *b) {
    int64_t x = ((const store_feed_item *)a)->seq, y = ((const store_feed_item *)b)->seq;
    return x < y ? -1 : x > y;
}

/* The metrics row of a step, every metric by name (locked); NULL when none. */
static const store_metrics_row *feed_metrics(store *s, store_rows *r, int64_t id, long step) {
    store_metrics_row *m = NULL;
    int cap = 0;
    sqlite3_stmt *st = q(s, SQL_FEED_MROW, "ii", id, (int64_t)step);
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        if (!m) {
            if (!(m = rows_alloc(r, sizeof *m))) break;
            memset(m, 0, sizeof *m);
            m->step = step;
            m->epoch = sqlite3_column_double(st, 1);
            m->created_at = sqlite3_column_int64(st, 2);
        }
        metric_push(r, m, &cap, col_str(r, st, 3), col_real(st, 4));
    }
    if (st) sqlite3_reset(st);
    return m;
}

int store_job_feed(store *s, int64_t id, int64_t after, int max, store_rows *out, int64_t *last_seq, int *final,
                   const store_job_row **job) {
    memset(out, 0, sizeof *out);
    *job = NULL;
    RLOCK();
    sqlite3_stmt *st = q(s, SQL_JOB_SEQ, "i", id);
    if (!st || sqlite3_step(st) != SQLITE_ROW) {
        if (st) sqlite3_reset(st);
        RUNLOCK();
        return STORE_ENOTFOUND;
    }
    *last_seq = sqlite3_column_int64(st, 0);
    char status[32];
    col_copy(st, 1, status, sizeof status);
    *final = store_status_final(status);
    sqlite3_reset(st);
    if (*last_seq > after) {
        st = q(s, SQL_FEED_EV, "iii", id, after, (int64_t)max);
        while (st && sqlite3_step(st) == SQLITE_ROW) {
            int64_t seq = sqlite3_column_int64(st, 6);
            store_feed_item *it;
            if (seq > after && (it = feed_push(out, seq, STORE_FEED_EVENT)))
                it->event = event_row(out, st, rows_alloc(out, sizeof(store_event_row)));
            /* a status change: the job as it is now, with the status of this change */
            if (sqlite3_column_type(st, 7) != SQLITE_NULL && seq + 1 > after &&
                (it = feed_push(out, seq + 1, STORE_FEED_STATUS)))
                it->status = col_str(out, st, 7);
        }
        if (st) sqlite3_reset(st);
        int64_t mseq[256];
        long mstep[256];
        int nm = 0;
        st = q(s, SQL_FEED_MET, "iii", id, after, (int64_t)(max < 256 ? max : 256));
        while (st && nm < 256 && sqlite3_step(st) == SQLITE_ROW) {
            mseq[nm] = sqlite3_column_int64(st, 0);
            mstep[nm++] = (long)sqlite3_column_int64(st, 1);
        }
        if (st) sqlite3_reset(st);
        for (int i = 0; i < nm; i++) {
            const store_metrics_row *m = feed_metrics(s, out, id, mstep[i]);
            store_feed_item *it = m ? feed_push(out, mseq[i], STORE_FEED_METRICS) : NULL;
            if (it) it->metrics = m;
        }
        st = q(s, SQL_FEED_SAM, "iii", id, after, (int64_t)max);
        while (st && sqlite3_step(st) == SQLITE_ROW) {
            store_feed_item *it = feed_push(out, sqlite3_column_int64(st, 6), STORE_FEED_SAMPLE);
            if (it) it->sample = sample_row(out, st, rows_alloc(out, sizeof(store_sample_row)));
        }
        if (st) sqlite3_reset(st);
    }
    /* merged by seq, the first max kept */
    if (out->n) qsort(out->v, (size_t)out->n, sizeof(store_feed_item), item_cmp);
    /* a job whose status is final has delivered everything only when nothing was cut */
    if (out->n > max) {
        out->n = max;
        *final = 0;
    }
    for (int i = 0; i < out->n; i++)
        if (((store_feed_item *)out->v)[i].kind == STORE_FEED_STATUS) {
            store_job_row *j = rows_alloc(out, sizeof *j);
            if (j) {
                memset(j, 0, sizeof *j);
                j->id = id;
                if (job_row(s, out, j) == STORE_OK) *job = j;
            }
            break;
        }
    RUNLOCK();
    return rows_done(out, STORE_OK);
}

/* ---- recovery, stats ------------------------------------------------------------------- */

static const char SQL_LEFT_RUNNING[] =
    "SELECT id, status FROM jobs WHERE status IN ('running', 'cancelling') ORDER BY id";

int store_recover(store *s) {
    int64_t ids[1024];
    char sts[1024][16];
    int n = 0;
    LOCK();
    sqlite3_stmt *st = q(s, SQL_LEFT_RUNNING, NULL);
    while (st && n < 1024 && sqlite3_step(st) == SQLITE_ROW) {
        ids[n] = sqlite3_column_int64(st, 0);
        col_copy(st, 1, sts[n++], 16);
    }
    if (st) sqlite3_reset(st);
    UNLOCK();
    for (int i = 0; i < n; i++) {
        store_upd u = STORE_UPD_INIT;
        if (!strcmp(sts[i], "cancelling")) {
            u.finished = 1;
            store_job_transition(s, ids[i], "cancelling", "cancelled", "info", &u,
                                 "Job cancelled (the daemon stopped while cancelling)");
            continue;
        }
        store_job_requeue(s, ids[i], "running", "The daemon stopped while the job was running", NULL);
    }
    return n;
}

int store_job_requeue(store *s, int64_t id, const char *from, const char *why, long *step_out) {
    store_upd u = STORE_UPD_INIT;
    char path[STORE_PATH];
    long step = 0;
    /* the latest checkpoint that is still on disk */
    int found = 0;
    while (!found && store_job_checkpoint_path(s, id, -1, path, &step) == STORE_OK) {
        char probe[STORE_PATH + 32];
        snprintf(probe, sizeof probe, "%s/trainer_state.json", path);
        if (al_file_exists(probe)) {
            found = 1;
        } else {
            LOCK();
            exec_st(s, q(s, SQL_DROP_CKPTS, "ii", id, (int64_t)step - 1));
            UNLOCK();
        }
    }
    u.step = found ? step : 0;
    u.resume_dir = found ? path : "";
    if (step_out) *step_out = found ? step : 0;
    if (found)
        return store_job_transition(s, id, from, "queued", "warn", &u, "%s; it resumes from the checkpoint at step %ld",
                                    why, step);
    return store_job_transition(s, id, from, "queued", "warn", &u, "%s; no checkpoint yet, it restarts from step 0",
                                why);
}

static const char SQL_STATS_STATUS[] = "SELECT status, count(*) FROM jobs GROUP BY status";
static const char SQL_STATS_SUM[] = "SELECT coalesce(sum(step),0), coalesce(sum(trained_tokens),0) FROM jobs";

const char *const store_statuses[STORE_N_STATUSES + 1] = {
    "validating_files", "queued", "running", "paused", "cancelling", "succeeded", "failed", "cancelled", NULL};

int store_stats_read(store *s, store_stats *out) {
    memset(out, 0, sizeof *out);
    RLOCK();
    sqlite3_stmt *st = q(s, SQL_STATS_STATUS, NULL);
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        const char *name = col_text(st, 0);
        for (int i = 0; name && i < STORE_N_STATUSES; i++)
            if (!strcmp(name, store_statuses[i])) out->jobs[i] = sqlite3_column_int64(st, 1);
    }
    if (st) sqlite3_reset(st);
    if ((st = q(s, SQL_STATS_SUM, NULL)) && sqlite3_step(st) == SQLITE_ROW) {
        out->steps_total = sqlite3_column_int64(st, 0);
        out->tokens_total = (int64_t)sqlite3_column_double(st, 1);
    }
    if (st) sqlite3_reset(st);
    RUNLOCK();
    return STORE_OK;
}

/* ---- keys -------------------------------------------------------------------------------- */

static const char SQL_KEY_INS[] = "INSERT INTO api_keys(name, hash, read_only, created_at) VALUES (?,?,?,?)";
static const char SQL_KEY_COUNT[] = "SELECT count(*) FROM api_keys";
static const char SQL_KEY_ALL[] = "SELECT hash, read_only FROM api_keys";

int store_key_add(store *s, const char *name, const unsigned char hash[32], int read_only, int64_t *id) {
    LOCK();
    sqlite3_stmt *st = q(s, SQL_KEY_INS, "t", name);
    int rc = STORE_EIO;
    if (st) {
        sqlite3_bind_blob(st, 2, hash, 32, SQLITE_TRANSIENT);
        sqlite3_bind_int(st, 3, read_only);
        sqlite3_bind_int64(st, 4, now_s());
        rc = exec_st(s, st);
        if (!rc && id) *id = sqlite3_last_insert_rowid(s->db);
    }
    UNLOCK();
    return rc;
}

int store_key_count(store *s) {
    RLOCK();
    sqlite3_stmt *st = q(s, SQL_KEY_COUNT, NULL);
    int n = st && sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
    if (st) sqlite3_reset(st);
    RUNLOCK();
    return n;
}

int store_key_check(store *s, const unsigned char hash[32], int *read_only) {
    int match = 0, ro = 0;
    RLOCK();
    sqlite3_stmt *st = q(s, SQL_KEY_ALL, NULL);
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        const void *h = sqlite3_column_blob(st, 0);
        int ok = h && sqlite3_column_bytes(st, 0) == 32 && CRYPTO_memcmp(h, hash, 32) == 0;
        if (ok && !match) ro = sqlite3_column_int(st, 1);
        match |= ok;
    }
    if (st) sqlite3_reset(st);
    RUNLOCK();
    if (match && read_only) *read_only = ro;
    return match;
}

/* ---- locations ------------------------------------------------------------------- */

static const char SQL_LOC_GET[] = "SELECT path FROM locations WHERE key = ?";
static const char SQL_LOC_PUT[] =
    "INSERT INTO locations(key, path) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET path = excluded.path";

int store_location(store *s, const char *key, char path[STORE_PATH]) {
    RLOCK();
    sqlite3_stmt *st = q(s, SQL_LOC_GET, "t", key);
    int rc = STORE_ENOTFOUND;
    if (st && sqlite3_step(st) == SQLITE_ROW) {
        col_copy(st, 0, path, STORE_PATH);
        rc = STORE_OK;
    }
    if (st) sqlite3_reset(st);
    RUNLOCK();
    return rc;
}

/* A path column: old or old/... becomes cur or cur/... (?1 old, ?2 cur;
 * SQLite's length and substr both count characters). */
#define MOVE_COLUMN(t, c)                                                                                   \
    "UPDATE " t " SET " c " = ?2 || substr(" c ", length(?1) + 1) WHERE " c " = ?1 OR substr(" c ", 1, " \
    "length(?1) + 1) = ?1 || '/'"
static const char *const SQL_MOVE[] = {
    MOVE_COLUMN("models", "path"),     MOVE_COLUMN("checkpoints", "path"),
    MOVE_COLUMN("jobs", "output_dir"), MOVE_COLUMN("jobs", "resume_dir"),
};
static const char SQL_MOVE_SPECS[] = "SELECT id, spec FROM jobs WHERE instr(spec, ?1) > 0";
static const char SQL_MOVE_SPEC_SET[] = "UPDATE jobs SET spec = ?2 WHERE id = ?1";

/* Rewrites every string of v (recursively) that is old or starts with
 * old/; returns how many. */
static int move_strings(json_t *v, const char *old, const char *cur) {
    int n = 0;
    size_t lo = strlen(old);
    if (json_is_string(v)) {
        const char *t = json_string_value(v);
        if (!strncmp(t, old, lo) && (t[lo] == 0 || t[lo] == '/')) {
            size_t lc = strlen(cur), lt = strlen(t + lo);
            char *nt = malloc(lc + lt + 1);
            if (!nt) return 0;
            memcpy(nt, cur, lc);
            memcpy(nt + lc, t + lo, lt + 1);
            n = json_string_set(v, nt) == 0;
            free(nt);
        }
    } else if (json_is_object(v)) {
        const char *k;
        json_t *e;
        json_object_foreach(v, k, e) n += move_strings(e, old, cur);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) n += move_strings(e, old, cur);
    }
    return n;
}

int store_relocate(store *s, const char *key, const char *old, const char *cur, int *moved, char err[AL_ERRLEN]) {
    int n = 0, rc;
    LOCK();
    if ((rc = tx_begin(s))) goto out;
    if (old && *old && strcmp(old, cur)) {
        for (size_t i = 0; !rc && i < sizeof SQL_MOVE / sizeof *SQL_MOVE; i++) {
            rc = exec_st(s, q(s, SQL_MOVE[i], "tt", old, cur));
            n += rc ? 0 : sqlite3_changes(s->db);
        }
        /* the trainers' descriptions: paths in JSON strings, found by the
         * old path's text as JSON writes it */
        json_t *js = json_string(old);
        char *esc = js ? json_dumps(js, JSON_ENCODE_ANY) : NULL;
        json_decref(js);
        if (esc) esc[strlen(esc) - 1] = 0; /* the quotes off */
        sqlite3_stmt *st = rc || !esc ? NULL : q(s, SQL_MOVE_SPECS, "t", esc + 1);
        if (!rc && !esc) rc = STORE_EIO;
        free(esc);
        json_t *rows = json_array();
        while (st && rows && sqlite3_step(st) == SQLITE_ROW)
            json_array_append_new(rows, json_pack("{s:I,s:s}", "id", (json_int_t)sqlite3_column_int64(st, 0),
                                                  "spec", (const char *)sqlite3_column_text(st, 1)));
        if (st) sqlite3_reset(st);
        if (!rc && !rows) rc = STORE_EIO;
        size_t i;
        json_t *row;
        json_array_foreach(rows, i, row) {
            if (rc) break;
            json_t *spec = json_loads(json_string_value(json_object_get(row, "spec")), 0, NULL);
            if (spec && move_strings(spec, old, cur)) {
                int64_t id = (int64_t)json_integer_value(json_object_get(row, "id"));
                char *txt = json_dumps(spec, JSON_COMPACT);
                rc = txt ? exec_st(s, q(s, SQL_MOVE_SPEC_SET, "it", id, txt)) : STORE_EIO;
                free(txt);
                n++;
            }
            json_decref(spec);
        }
        json_decref(rows);
    }
    if (!rc) rc = exec_st(s, q(s, SQL_LOC_PUT, "tt", key, cur));
    if (!rc) rc = tx_commit(s);
    else tx_rollback(s);
out:
    if (rc) snprintf(err, AL_ERRLEN, "recording where %s is: %s", key, sqlite3_errmsg(s->db));
    else feed_bump(s);
    UNLOCK();
    objects_changed(s);
    if (moved) *moved = rc ? 0 : n;
    return rc;
}
