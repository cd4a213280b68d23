/*
 * A statement deadline for SQLite connections that expose neither a progress handler nor
 * sqlite3_interrupt to JavaScript (better-sqlite3 is built with SQLITE_OMIT_PROGRESS_CALLBACK).
 *
 * Loaded into a connection, it registers flotilla_guard(key, ms):
 *   - the first call sets the connection's key (the store calls it right after opening, before any
 *     client SQL runs); every later call must present the same key, so client SQL cannot disarm it;
 *   - ms > 0 arms a deadline ms from now, ms = 0 disarms it; past the deadline the watchdog
 *     interrupts the connection every REFIRE_MS until it is disarmed;
 *   - it returns 1 when the deadline armed last fired (the watchdog interrupted), else 0.
 * One watchdog thread serves every connection of the process: it sleeps until the nearest
 * deadline and calls sqlite3_interrupt() on that connection, which SQLite allows from another
 * thread. A connection's state is freed by SQLite when the connection closes (xDestroy), under the
 * same mutex the watchdog holds while it interrupts, so it never interrupts a closed connection.
 */
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT1

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEY_MAX 64
/*
 * Once a deadline has passed, the watchdog interrupts again this often until it is disarmed: SQLite
 * clears an interrupt when a statement starts with none running, so a deadline that passed between
 * two statements of a request (or during a short internal one) must not let the next one run free.
 */
#define REFIRE_MS 10

typedef struct Guard Guard;
struct Guard {
  sqlite3 *db;
  char key[KEY_MAX + 1];
  int keySet;
  int armed;
  int fired;
  struct timespec deadline; /* CLOCK_MONOTONIC */
  Guard *next;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv;
static int started = 0;
static Guard *guards = 0;
/*
 * What the watchdog waits for: nothing armed (it needs a signal to see a new deadline), or a time
 * (a deadline armed later than that one needs no signal: it looks again then). So a busy
 * connection arming and disarming for every request wakes it about once per timeout, not per call.
 */
static int waitingForever = 0;
static struct timespec waitingUntil;

static int before(const struct timespec *a, const struct timespec *b) {
  return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static void *watchdog(void *unused) {
  (void)unused;
  pthread_mutex_lock(&mu);
  for (;;) {
    Guard *next = 0;
    for (Guard *g = guards; g; g = g->next) {
      if (g->armed && (!next || before(&g->deadline, &next->deadline))) next = g;
    }
    if (!next) {
      waitingForever = 1;
      pthread_cond_wait(&cv, &mu);
      waitingForever = 0;
      continue;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (!before(&now, &next->deadline)) {
      next->fired = 1;
      sqlite3_interrupt(next->db);
      /* Still armed: again in REFIRE_MS, until the owner disarms it. */
      next->deadline = now;
      next->deadline.tv_nsec += REFIRE_MS * 1000000L;
      if (next->deadline.tv_nsec >= 1000000000L) {
        next->deadline.tv_sec += 1;
        next->deadline.tv_nsec -= 1000000000L;
      }
      continue;
    }
    waitingUntil = next->deadline;
    pthread_cond_timedwait(&cv, &mu, &waitingUntil);
    waitingUntil.tv_sec = 0;
    waitingUntil.tv_nsec = 0;
  }
  return 0;
}

static int startWatchdog(void) {
  if (started) return 0;
  pthread_condattr_t attr;
  if (pthread_condattr_init(&attr) != 0) return 1;
  int bad = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 || pthread_cond_init(&cv, &attr) != 0;
  pthread_condattr_destroy(&attr);
  if (bad) return 1;
  pthread_t t;
  pthread_attr_t ta;
  pthread_attr_init(&ta);
  pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
  int rc = pthread_create(&t, &ta, watchdog, 0);
  pthread_attr_destroy(&ta);
  if (rc != 0) return 1;
  started = 1;
  return 0;
}

static void guardFunc(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  Guard *g = (Guard *)sqlite3_user_data(ctx);
  (void)argc;
  const char *key = (const char *)sqlite3_value_text(argv[0]);
  sqlite3_int64 ms = sqlite3_value_int64(argv[1]);
  if (!key || strlen(key) == 0 || strlen(key) > KEY_MAX || ms < 0) {
    sqlite3_result_error(ctx, "flotilla_guard: bad arguments", -1);
    return;
  }
  pthread_mutex_lock(&mu);
  if (!g->keySet) {
    strcpy(g->key, key);
    g->keySet = 1;
  } else if (strcmp(g->key, key) != 0) {
    pthread_mutex_unlock(&mu);
    sqlite3_result_error(ctx, "flotilla_guard: not allowed", -1);
    return;
  }
  int fired = g->fired;
  if (ms > 0) {
    clock_gettime(CLOCK_MONOTONIC, &g->deadline);
    g->deadline.tv_sec += ms / 1000;
    g->deadline.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (g->deadline.tv_nsec >= 1000000000L) {
      g->deadline.tv_sec += 1;
      g->deadline.tv_nsec -= 1000000000L;
    }
    g->armed = 1;
    g->fired = 0;
    if (waitingForever || before(&g->deadline, &waitingUntil)) pthread_cond_signal(&cv);
  } else {
    g->armed = 0;
  }
  pthread_mutex_unlock(&mu);
  sqlite3_result_int(ctx, fired);
}

static void guardDestroy(void *p) {
  Guard *g = (Guard *)p;
  pthread_mutex_lock(&mu);
  for (Guard **at = &guards; *at; at = &(*at)->next) {
    if (*at == g) {
      *at = g->next;
      break;
    }
  }
  pthread_mutex_unlock(&mu);
  free(g);
}

#ifdef _WIN32
__declspec(dllexport)
#endif
int sqlite3_statementguard_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi) {
  SQLITE_EXTENSION_INIT2(pApi);
  pthread_mutex_lock(&mu);
  int failed = startWatchdog();
  pthread_mutex_unlock(&mu);
  if (failed) {
    *pzErrMsg = sqlite3_mprintf("statement_guard: cannot start the watchdog thread");
    return SQLITE_ERROR;
  }
  Guard *g = (Guard *)calloc(1, sizeof(Guard));
  if (!g) return SQLITE_NOMEM;
  g->db = db;
  pthread_mutex_lock(&mu);
  g->next = guards;
  guards = g;
  pthread_mutex_unlock(&mu);
  /* DIRECTONLY: not callable from triggers or views that client SQL could define. */
  return sqlite3_create_function_v2(db, "flotilla_guard", 2, SQLITE_UTF8 | SQLITE_DIRECTONLY, g, guardFunc, 0, 0, guardDestroy);
}
