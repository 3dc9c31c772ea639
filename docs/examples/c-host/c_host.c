/*
 * c_host: a C engine that embeds CPython and drives the peer-sync core
 * through the flat shim (peersync_proto.shim). It does what an engine does:
 * reports status, serves requests, persists floors, completes a snapshot
 * capture and an apply, goes on air on BecomeLeader, and sleeps until the
 * core's next deadline on its own monotonic clock. One line per step.
 *
 * Threads and the GIL: this host calls the shim from its main thread only,
 * which holds the GIL from Py_InitializeFromConfig() to Py_FinalizeEx().
 * See docs/embedding.md for a host that calls from several threads.
 *
 * Build and run: make -C docs/examples/c-host run
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#ifndef PEERSYNC_PYTHON
#error "build with -DPEERSYNC_PYTHON='\"/path/to/.venv/bin/python\"' (see the Makefile)"
#endif

static PyObject *json_loads; /* json.loads, owned */
static PyObject *engine;     /* the shim's EngineHandle, owned */
static int step;

/* What this engine keeps durably (a real engine writes and fsyncs them). */
static long long floor_epoch = -1, floor_fencing = -1;
static int on_air;
static long long on_air_epoch;
static char *state;         /* the engine's own state, JSON */
static Py_ssize_t state_len;

/* ---- plumbing ------------------------------------------------------------ */

static void die(const char *what)
{
    if (PyErr_Occurred())
        PyErr_Print();
    fprintf(stderr, "c_host: %s failed\n", what);
    exit(1);
}

static long long now_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        perror("clock_gettime");
        exit(1);
    }
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* entropy(n) -> n bytes from getrandom(2): the host's entropy source. */
static PyObject *host_entropy(PyObject *self, PyObject *arg)
{
    (void)self;
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 0 || n > 4096) {
        PyErr_SetString(PyExc_ValueError, "entropy: 0..4096 bytes at a time");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, n);
    if (out == NULL)
        return NULL;
    char *buf = PyBytes_AS_STRING(out);
    Py_ssize_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(buf + got, (size_t)(n - got), 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            Py_DECREF(out);
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        got += r;
    }
    return out;
}

static PyMethodDef entropy_def = {
    "host_entropy", host_entropy, METH_O, "n random bytes from getrandom(2)"};

/* json.loads(text) -> new reference; dies on error. */
static PyObject *loads(PyObject *text, const char *what)
{
    PyObject *obj = PyObject_CallOneArg(json_loads, text);
    if (obj == NULL || !PyDict_Check(obj))
        die(what);
    return obj;
}

/* A field of a dict: borrowed, dies when missing. */
static PyObject *field(PyObject *dict, const char *key)
{
    PyObject *value = PyDict_GetItemString(dict, key);
    if (value == NULL) {
        fprintf(stderr, "c_host: no field %s\n", key);
        die("field");
    }
    return value;
}

static long long int_field(PyObject *dict, const char *key)
{
    long long v = PyLong_AsLongLong(field(dict, key));
    if (v == -1 && PyErr_Occurred())
        die(key);
    return v;
}

static const char *str_field(PyObject *dict, const char *key)
{
    const char *s = PyUnicode_AsUTF8(field(dict, key)); /* lives as long as dict */
    if (s == NULL)
        die(key);
    return s;
}

/* A flat answer (status, header_pairs, body, effects_jsonl) unpacked. */
typedef struct {
    PyObject *tuple; /* owned; the others are borrowed from it */
    long status;
    PyObject *headers, *body, *effects;
} Answer;

static Answer unpack(PyObject *tuple, const char *what)
{
    Answer a = {tuple, 0, NULL, NULL, NULL};
    if (tuple == NULL ||
        !PyArg_ParseTuple(tuple, "lOOO", &a.status, &a.headers, &a.body, &a.effects))
        die(what);
    return a;
}

/* ---- effects ---------------------------------------------------------------- */

/* Run the effect lines in order, before the response is sent. Names go to
 * `names` ("none" if there were none); a pending capture or apply's request id
 * to *pending_id. */
static void run_effects(PyObject *jsonl, char *names, size_t size, long long *pending_id)
{
    const char *text = PyUnicode_AsUTF8(jsonl);
    if (text == NULL)
        die("effects");
    snprintf(names, size, "none");
    size_t used = 0;
    while (*text) {
        const char *end = strchr(text, '\n');
        if (end == NULL)
            die("effect line without newline");
        PyObject *line = PyUnicode_FromStringAndSize(text, end - text);
        if (line == NULL)
            die("effect line");
        PyObject *effect = loads(line, "effect json");
        Py_DECREF(line);
        const char *name = str_field(effect, "effect");
        if (strcmp(name, "FloorsRaised") == 0) {
            /* Durable before the response goes out, so neither goes back. */
            floor_epoch = int_field(effect, "epoch");
            floor_fencing = int_field(effect, "fencingToken");
        } else if (strcmp(name, "BecomeLeader") == 0) {
            on_air = 1;
            on_air_epoch = int_field(effect, "epoch");
        } else if (strcmp(name, "StepDown") == 0) {
            on_air = 0;
        } else if (strcmp(name, "CaptureSnapshot") == 0 || strcmp(name, "ApplySnapshot") == 0) {
            *pending_id = int_field(effect, "requestId");
        }
        int n = snprintf(names + used, size - used, "%s%s", used ? "," : "", name);
        if (n < 0 || (size_t)n >= size - used)
            die("effect names");
        used += (size_t)n;
        Py_DECREF(effect);
        text = end + 1;
    }
}

/* ---- calls into the shim ------------------------------------------------------- */

static Answer request(long rid, const char *method, const char *path, const char *lock_id,
                      const char *body)
{
    PyObject *headers = lock_id == NULL
        ? Py_BuildValue("((ss)(ss))", "Authorization", "Bearer t0k",
                        "Content-Type", "application/json")
        : Py_BuildValue("((ss)(ss)(ss))", "Authorization", "Bearer t0k",
                        "Content-Type", "application/json", "X-Reconcile-Lock-Id", lock_id);
    if (headers == NULL)
        die("headers");
    PyObject *r = PyObject_CallMethod(engine, "request", "lssOy#L", rid, method, path, headers,
                                      body, (Py_ssize_t)strlen(body), now_ns());
    Py_DECREF(headers);
    return unpack(r, path);
}

static void done(Answer a)
{
    Py_DECREF(a.tuple);
}

/* The response body as a dict (new reference); dies unless the status is `want`. */
static PyObject *expect(Answer a, long want, const char *what)
{
    if (a.status != want) {
        fprintf(stderr, "c_host: %s answered %ld, wanted %ld\n", what, a.status, want);
        PyObject_Print(a.body, stderr, 0);
        fputc('\n', stderr);
        die(what);
    }
    return loads(a.body, what);
}

/* Sleep on CLOCK_MONOTONIC until `deadline` ns (absolute). */
static void sleep_until(long long deadline)
{
    struct timespec ts = {deadline / 1000000000LL, deadline % 1000000000LL};
    int rc;
    while ((rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL)) == EINTR)
        ;
    if (rc != 0) {
        errno = rc;
        perror("clock_nanosleep");
        exit(1);
    }
}

#define STEP(...) (printf("[%d] ", ++step), printf(__VA_ARGS__), putchar('\n'), fflush(stdout))

int main(void)
{
    char names[256], lock_id[64];
    long long pending = -1;

    /* Embed: the venv's interpreter, so the repo's packages import. */
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    PyStatus st = PyConfig_SetBytesString(&config, &config.program_name, PEERSYNC_PYTHON);
    if (!PyStatus_Exception(st))
        st = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(st))
        Py_ExitStatusException(st);

    PyObject *json_mod = PyImport_ImportModule("json");
    if (json_mod == NULL || (json_loads = PyObject_GetAttrString(json_mod, "loads")) == NULL)
        die("import json");
    Py_DECREF(json_mod);
    PyObject *shim = PyImport_ImportModule("peersync_proto.shim");
    if (shim == NULL)
        die("import peersync_proto.shim");
    STEP("embed: Python %s initialised, peersync_proto.shim imported", PY_VERSION);

    PyObject *entropy = PyCFunction_New(&entropy_def, NULL);
    if (entropy == NULL)
        die("entropy");
    /* Fresh engine: no floors persisted yet (-1, -1). */
    engine = PyObject_CallMethod(shim, "create_engine", "ssssllOL", "a", "follower", "t0k",
                                 "s3c", -1L, -1L, entropy, now_ns());
    Py_DECREF(entropy);
    Py_DECREF(shim);
    if (engine == NULL)
        die("create_engine");
    STEP("create: engine a, follower, fresh (no floors), lock ids from getrandom(2)");

    PyObject *r = PyObject_CallMethod(engine, "status_report", "sL",
                                      "{\"programSource\": \"cam-1\", \"lastCommandSeq\": 7}",
                                      now_ns());
    if (r == NULL)
        die("status_report");
    run_effects(r, names, sizeof names, &pending);
    Py_DECREF(r);
    STEP("status: programSource=cam-1 lastCommandSeq=7 reported, effects: %s", names);

    Answer a = request(1, "GET", "/api/peer/health", NULL, "");
    run_effects(a.effects, names, sizeof names, &pending);
    PyObject *b = expect(a, 200, "peer health");
    STEP("peer-health: 200 status=%s role=%s epoch=%lld programSource=%s", str_field(b, "status"),
         str_field(b, "role"), int_field(b, "epoch"), str_field(b, "programSource"));
    Py_DECREF(b);
    done(a);

    a = request(2, "POST", "/api/sync/reconcile-lock", NULL,
                "{\"owner\": \"c-host\", \"ttlMs\": 5000}");
    run_effects(a.effects, names, sizeof names, &pending);
    b = expect(a, 200, "acquire");
    snprintf(lock_id, sizeof lock_id, "%s", str_field(b, "lockId"));
    long long token = int_field(b, "fencingToken");
    STEP("acquire: 200 fencingToken=%lld expiresMs=%lld, effects: %s, floors persisted "
         "epoch=%lld fencingToken=%lld", token, int_field(b, "expiresMs"), names, floor_epoch,
         floor_fencing);
    Py_DECREF(b);
    done(a);

    char path[128];
    snprintf(path, sizeof path, "/api/sync/reconcile-lock/%s", lock_id);
    a = request(3, "PUT", path, NULL, "{\"ttlMs\": 10000}");
    run_effects(a.effects, names, sizeof names, &pending);
    b = expect(a, 200, "refresh");
    STEP("refresh: 200 %s lockId, fencingToken=%lld expiresMs=%lld, effects: %s",
         strcmp(str_field(b, "lockId"), lock_id) == 0 ? "same" : "OTHER",
         int_field(b, "fencingToken"), int_field(b, "expiresMs"), names);
    Py_DECREF(b);
    done(a);

    /* GET state: the core asks this host to capture one consistent instant. */
    state = strdup("{\"scene\": \"news\", \"tally\": [1, 2]}");
    if (state == NULL)
        die("strdup");
    state_len = (Py_ssize_t)strlen(state);
    a = request(4, "GET", "/api/sync/state", NULL, "");
    run_effects(a.effects, names, sizeof names, &pending);
    if (a.status != 0 || pending != 4)
        die("GET state should wait for a capture");
    done(a);
    a = unpack(PyObject_CallMethod(engine, "capture_done", "Ly#LssLLL", pending, state,
                                   state_len, 1713200000000000LL, "cam-1", "cam-2", 7LL, 7LL,
                                   now_ns()),
               "capture_done");
    PyObject *snapshot = a.body;
    Py_INCREF(snapshot); /* kept to PUT it back below */
    b = expect(a, 200, "capture");
    STEP("capture: GET /api/sync/state pending on %s, state handed over, 200 checksum=%s", names,
         str_field(b, "checksum"));
    Py_DECREF(b);
    done(a);

    /* PUT state under our lock: the core asks this host to apply it durably. */
    const char *snap_bytes = PyBytes_AsString(snapshot);
    if (snap_bytes == NULL)
        die("snapshot bytes");
    pending = -1;
    a = request(5, "PUT", "/api/sync/state", lock_id, snap_bytes);
    Py_DECREF(snapshot);
    run_effects(a.effects, names, sizeof names, &pending);
    if (a.status != 0 || pending != 5)
        die("PUT state should wait for an apply");
    done(a);
    r = PyObject_CallMethod(engine, "snapshot_to_apply", "L", pending);
    PyObject *envelope, *new_state;
    if (r == NULL || !PyArg_ParseTuple(r, "OS", &envelope, &new_state))
        die("snapshot_to_apply");
    char *copy = malloc((size_t)PyBytes_GET_SIZE(new_state) + 1);
    if (copy == NULL)
        die("malloc");
    memcpy(copy, PyBytes_AS_STRING(new_state), (size_t)PyBytes_GET_SIZE(new_state) + 1);
    free(state); /* "durably": a real engine writes, fsyncs, then swaps */
    state = copy;
    state_len = PyBytes_GET_SIZE(new_state);
    Py_DECREF(r);
    a = unpack(PyObject_CallMethod(engine, "apply_done", "LOL", pending, Py_True, now_ns()),
               "apply_done");
    char apply_effects[256];
    run_effects(a.effects, apply_effects, sizeof apply_effects, &pending);
    b = expect(a, 200, "apply");
    STEP("apply: PUT /api/sync/state pending on %s, %zd state bytes applied, 200 epoch=%lld "
         "role=%s", names, state_len, int_field(b, "epoch"), str_field(b, "role"));
    Py_DECREF(b);
    done(a);

    a = request(6, "DELETE", path, NULL, "");
    run_effects(a.effects, names, sizeof names, &pending);
    b = expect(a, 200, "release");
    STEP("release: 200 released=%s, effects: %s",
         PyObject_IsTrue(field(b, "released")) == 1 ? "true" : "false", names);
    Py_DECREF(b);
    done(a);

    PyObject *cp = Py_BuildValue("((ss)(ss))", "X-Control-Plane-Secret", "s3c", "Content-Type",
                                 "application/json");
    if (cp == NULL)
        die("headers");
    const char *why = "{\"reason\": \"c-host drill\"}";
    a = unpack(PyObject_CallMethod(engine, "request", "lssOy#L", 7L, "POST",
                                   "/api/peer/force-leader", cp, why, (Py_ssize_t)strlen(why),
                                   now_ns()),
               "force-leader");
    Py_DECREF(cp);
    run_effects(a.effects, names, sizeof names, &pending);
    b = expect(a, 200, "force-leader");
    STEP("force-leader: 200 epoch=%lld previousRole=%s, effects: %s, %s at epoch %lld",
         int_field(b, "epoch"), str_field(b, "previousRole"), names,
         on_air ? "on air" : "OFF AIR", on_air_epoch);
    Py_DECREF(b);
    done(a);

    /* Sleep until the core's next deadline on our own clock, then tick there
     * (never before it). We sent no status since step 3, so it is the stall. */
    r = PyObject_CallMethod(engine, "next_deadline", NULL);
    long long deadline = r == NULL ? -1 : PyLong_AsLongLong(r);
    Py_XDECREF(r);
    if (deadline < 0)
        die("next_deadline");
    long long before = now_ns();
    sleep_until(deadline);
    long long woke = now_ns();
    r = PyObject_CallMethod(engine, "tick", "L", woke > deadline ? woke : deadline);
    if (r == NULL)
        die("tick");
    run_effects(r, names, sizeof names, &pending);
    Py_DECREF(r);
    STEP("sleep: next deadline in %lld ms, slept on CLOCK_MONOTONIC, woke %s it, tick effects: %s",
         (deadline - before) / 1000000LL, woke >= deadline ? "at or after" : "BEFORE", names);

    a = request(8, "GET", "/api/peer/health", NULL, "");
    b = expect(a, 200, "peer health");
    STEP("peer-health: 200 status=%s role=%s epoch=%lld", str_field(b, "status"),
         str_field(b, "role"), int_field(b, "epoch"));
    Py_DECREF(b);
    done(a);

    r = PyObject_CallMethod(engine, "status_report", "sL", "{}", now_ns());
    if (r == NULL)
        die("heartbeat");
    run_effects(r, names, sizeof names, &pending);
    Py_DECREF(r);
    a = request(9, "GET", "/api/peer/health", NULL, "");
    b = expect(a, 200, "peer health");
    STEP("heartbeat: effects: %s, peer-health status=%s", names, str_field(b, "status"));
    Py_DECREF(b);
    done(a);

    free(state);
    Py_CLEAR(engine);
    Py_CLEAR(json_loads);
    if (Py_FinalizeEx() < 0)
        return 1;
    printf("done: %d steps, exit 0\n", step);
    return 0;
}
