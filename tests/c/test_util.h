/*
 * test_util.h: what the C test programs in tests/c/ share. The CHECK
 * macros (a failed check prints its line to stderr and exits 1; every check
 * that holds is counted in g_checks, atomically so threads may check too),
 * LLMUX_TEST_LIGHT handling and small helpers.
 *
 * Header-only: everything is static (inline), so each program gets its own
 * copy and unused helpers draw no warning. Define _POSIX_C_SOURCE 200809L
 * before including anything (clock_gettime, nanosleep, strdup).
 */
#ifndef LLMUX_TEST_UTIL_H
#define LLMUX_TEST_UTIL_H

#if !defined(_POSIX_C_SOURCE) || _POSIX_C_SOURCE < 200809L
#error "define _POSIX_C_SOURCE 200809L before including test_util.h"
#endif

#include "llmux.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How many checks held. */
static atomic_int g_checks;

/* Nonzero when LLMUX_TEST_LIGHT is set (not to "" or "0"): keep request
 * counts small and wait longer (used under valgrind). Set by test_init(). */
static int g_light;

#define CHECKF(cond, ...)                                                      \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n  ", __FILE__, __LINE__, \
                    #cond);                                                    \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            exit(1);                                                           \
        }                                                                      \
        atomic_fetch_add(&g_checks, 1);                                        \
    } while (0)

#define CHECK(cond) CHECKF(cond, "%s", "")

#define CHECK_RC(expr, want)                                                   \
    do {                                                                       \
        llmux_result rc_ = (expr);                                             \
        CHECKF(rc_ == (llmux_result)(want), "%s returned %u (%s), want %u",    \
               #expr, (unsigned)rc_, llmux_result_text(rc_), (unsigned)(want)); \
    } while (0)

/* Counts one check that holds without a condition to test. */
static inline void check_passed(void) { atomic_fetch_add(&g_checks, 1); }

/* How many checks held so far. */
static inline int checks_passed(void) { return atomic_load(&g_checks); }

/* Reads LLMUX_TEST_LIGHT into g_light and zeroes the check count. */
static inline void test_init(void) {
    const char *light = getenv("LLMUX_TEST_LIGHT");
    g_light = light != NULL && light[0] != '\0' && strcmp(light, "0") != 0;
    atomic_init(&g_checks, 0);
}

/* The base URL of the (first) mock server: argv[1], else the first entry of
 * the comma-separated LLMUX_TEST_BASE_URLS, copied into *env_copy (free it).
 * NULL, after printing the usage to stderr, if there is neither. */
static inline const char *first_base_url(int argc, char **argv, char **env_copy) {
    *env_copy = NULL;
    if (argc > 1)
        return argv[1];
    const char *env = getenv("LLMUX_TEST_BASE_URLS");
    if (env == NULL || env[0] == '\0') {
        fprintf(stderr, "usage: %s BASE_URL (or LLMUX_TEST_BASE_URLS)\n", argv[0]);
        return NULL;
    }
    *env_copy = strdup(env);
    char *comma = strchr(*env_copy, ',');
    if (comma)
        *comma = '\0';
    return *env_copy;
}

/* Seconds on the monotonic clock. */
static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void sleep_ms(long ms) {
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* How long to wait for something that should happen (valgrind is slow). */
static inline double patience_s(void) { return g_light ? 240.0 : 90.0; }

/* Whether `hay` (may be NULL) contains `needle`. */
static inline int contains(const char *hay, const char *needle) {
    return hay != NULL && strstr(hay, needle) != NULL;
}

#endif /* LLMUX_TEST_UTIL_H */
