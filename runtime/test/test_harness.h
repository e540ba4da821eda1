/* A minimal test harness for the C tests of the core.
 *
 * A test file defines its cases with
 *
 *     TEST(case_name) {
 *       ASSERT_EQ_INT(ac_store_delete(s, 0, "k", 1), AC_ENOENT);
 *     }
 *
 * at the start of a line (cmake/Tests.cmake finds the cases with grep and
 * registers one CTest test per case).  Names are lower case, digits and '_'.
 * The header also provides main():
 *
 *     test_foo --list        prints every case name, one per line
 *     test_foo case_name     runs that case in this process
 *     test_foo               runs every case, each in a forked child
 *
 * Each case runs in its own process: a failed assertion prints both values,
 * file and line, then ends the process with status 1 at once (no exit
 * handlers, so a failure is not followed by a leak report of the objects the
 * case had not freed yet).  A case that passes returns normally and the
 * process exits through exit(), where the sanitizers' leak check runs.
 * An alarm ends a case that hangs, as a failure.
 *
 * Include this header once, from the test file. */
#ifndef AC_TEST_HARNESS_H
#define AC_TEST_HARNESS_H

#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define TEST_MAX_CASES 256
/* Below CTest's 60-second timeout, so a hang is reported by us. */
#define TEST_ALARM_SECONDS 50

typedef void (*test_fn_)(void);

typedef struct {
  const char *name;
  test_fn_ fn;
} test_case_;

static test_case_ test_cases_[TEST_MAX_CASES];
static int test_ncases_;

__attribute__((unused)) static void test_register_(const char *name,
                                                   test_fn_ fn) {
  if (test_ncases_ == TEST_MAX_CASES) {
    fprintf(stderr, "test harness: more than %d cases\n", TEST_MAX_CASES);
    _exit(2);
  }
  test_cases_[test_ncases_].name = name;
  test_cases_[test_ncases_].fn = fn;
  test_ncases_++;
}

/* Registration runs before main() through a constructor, so a case exists
 * as soon as it is defined. */
#define TEST(name)                                                            \
  static void test_case_##name(void);                                         \
  __attribute__((constructor)) static void test_register_##name(void) {       \
    test_register_(#name, test_case_##name);                                  \
  }                                                                           \
  static void test_case_##name(void)

__attribute__((unused, noreturn)) static void test_fail_(const char *file,
                                                         int line) {
  fprintf(stderr, "%s:%d: assertion failed\n", file, line);
  fflush(stdout);
  fflush(stderr);
  _exit(1);
}

/* Aborts the case with a message (for conditions no macro below covers). */
#define FAIL(...)                                                             \
  do {                                                                        \
    fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                           \
    fprintf(stderr, __VA_ARGS__);                                             \
    fprintf(stderr, "\n");                                                    \
    test_fail_(__FILE__, __LINE__);                                           \
  } while (0)

#define ASSERT_TRUE(cond)                                                     \
  do {                                                                        \
    if (!(cond)) {                                                            \
      fprintf(stderr, "expected true: %s\n", #cond);                          \
      test_fail_(__FILE__, __LINE__);                                         \
    }                                                                         \
  } while (0)

#define ASSERT_FALSE(cond)                                                    \
  do {                                                                        \
    if (cond) {                                                               \
      fprintf(stderr, "expected false: %s\n", #cond);                         \
      test_fail_(__FILE__, __LINE__);                                         \
    }                                                                         \
  } while (0)

/* Signed comparison: ASSERT_CMP_INT(a, <=, b). */
#define ASSERT_CMP_INT(a, op, b)                                              \
  do {                                                                        \
    intmax_t test_a_ = (intmax_t)(a), test_b_ = (intmax_t)(b);                \
    if (!(test_a_ op test_b_)) {                                              \
      fprintf(stderr, "expected %s %s %s\n  left:  %jd\n  right: %jd\n", #a,  \
              #op, #b, test_a_, test_b_);                                     \
      test_fail_(__FILE__, __LINE__);                                         \
    }                                                                         \
  } while (0)

/* Unsigned comparison: ASSERT_CMP_UINT(a, <, b). */
#define ASSERT_CMP_UINT(a, op, b)                                             \
  do {                                                                        \
    uintmax_t test_a_ = (uintmax_t)(a), test_b_ = (uintmax_t)(b);             \
    if (!(test_a_ op test_b_)) {                                              \
      fprintf(stderr, "expected %s %s %s\n  left:  %ju\n  right: %ju\n", #a,  \
              #op, #b, test_a_, test_b_);                                     \
      test_fail_(__FILE__, __LINE__);                                         \
    }                                                                         \
  } while (0)

#define ASSERT_EQ_INT(a, b) ASSERT_CMP_INT(a, ==, b)
#define ASSERT_NE_INT(a, b) ASSERT_CMP_INT(a, !=, b)
#define ASSERT_EQ_UINT(a, b) ASSERT_CMP_UINT(a, ==, b)
#define ASSERT_NE_UINT(a, b) ASSERT_CMP_UINT(a, !=, b)

/* 64-bit values shown in hex (hashes, seeds). */
#define ASSERT_CMP_HEX(a, op, b)                                              \
  do {                                                                        \
    uint64_t test_a_ = (uint64_t)(a), test_b_ = (uint64_t)(b);                \
    if (!(test_a_ op test_b_)) {                                              \
      fprintf(stderr,                                                         \
              "expected %s %s %s\n  left:  0x%016" PRIx64                     \
              "\n  right: 0x%016" PRIx64 "\n",                                \
              #a, #op, #b, test_a_, test_b_);                                 \
      test_fail_(__FILE__, __LINE__);                                         \
    }                                                                         \
  } while (0)

#define ASSERT_EQ_PTR(a, b)                                                   \
  do {                                                                        \
    const void *test_a_ = (const void *)(a), *test_b_ = (const void *)(b);    \
    if (test_a_ != test_b_) {                                                 \
      fprintf(stderr, "expected %s == %s\n  left:  %p\n  right: %p\n", #a,    \
              #b, test_a_, test_b_);                                          \
      test_fail_(__FILE__, __LINE__);                                         \
    }                                                                         \
  } while (0)

#define ASSERT_NULL(a) ASSERT_EQ_PTR(a, NULL)

#define ASSERT_NOT_NULL(a)                                                    \
  do {                                                                        \
    if ((a) == NULL) {                                                        \
      fprintf(stderr, "expected %s != NULL\n", #a);                           \
      test_fail_(__FILE__, __LINE__);                                         \
    }                                                                         \
  } while (0)

#define ASSERT_EQ_STR(a, b)                                                   \
  do {                                                                        \
    const char *test_a_ = (a), *test_b_ = (b);                                \
    if (test_a_ == NULL || test_b_ == NULL ? test_a_ != test_b_               \
                                           : strcmp(test_a_, test_b_) != 0) { \
      fprintf(stderr, "expected %s == %s\n  left:  \"%s\"\n  right: \"%s\"\n", \
              #a, #b, test_a_ ? test_a_ : "(null)",                           \
              test_b_ ? test_b_ : "(null)");                                  \
      test_fail_(__FILE__, __LINE__);                                         \
    }                                                                         \
  } while (0)

__attribute__((unused)) static void test_print_bytes_(const char *label,
                                                      const void *p,
                                                      size_t len) {
  const unsigned char *b = p;
  fprintf(stderr, "  %s (%zu bytes):", label, len);
  if (p == NULL) {
    fprintf(stderr, " (null)\n");
    return;
  }
  for (size_t i = 0; i < len && i < 64; i++) fprintf(stderr, " %02x", b[i]);
  fprintf(stderr, len > 64 ? " ...\n" : "\n");
}

/* Byte strings: a and b compared over len bytes (NULL only equals NULL). */
#define ASSERT_EQ_MEM(a, b, len)                                              \
  do {                                                                        \
    const void *test_a_ = (a), *test_b_ = (b);                                \
    size_t test_n_ = (len);                                                   \
    if (test_a_ == NULL || test_b_ == NULL                                    \
            ? test_a_ != test_b_                                              \
            : (test_n_ > 0 && memcmp(test_a_, test_b_, test_n_) != 0)) {      \
      fprintf(stderr, "expected %s == %s over %s bytes\n", #a, #b, #len);     \
      test_print_bytes_("left ", test_a_, test_n_);                           \
      test_print_bytes_("right", test_b_, test_n_);                           \
      test_fail_(__FILE__, __LINE__);                                         \
    }                                                                         \
  } while (0)

/* Doubles: |a - b| <= eps; equal infinities also match. */
#define ASSERT_NEAR(a, b, eps)                                                \
  do {                                                                        \
    double test_a_ = (double)(a), test_b_ = (double)(b);                      \
    double test_e_ = (double)(eps);                                           \
    if (!(test_a_ == test_b_ || fabs(test_a_ - test_b_) <= test_e_)) {        \
      fprintf(stderr,                                                         \
              "expected %s == %s within %g\n  left:  %.17g\n  right: %.17g\n", \
              #a, #b, test_e_, test_a_, test_b_);                             \
      test_fail_(__FILE__, __LINE__);                                         \
    }                                                                         \
  } while (0)

static const test_case_ *test_find_(const char *name) {
  for (int i = 0; i < test_ncases_; i++)
    if (strcmp(test_cases_[i].name, name) == 0) return &test_cases_[i];
  return NULL;
}

static const char *test_running_;

static void test_on_alarm_(int sig) {
  static const char msg[] = ": timed out (a hang counts as a failure)\n";
  (void)sig;
  ssize_t ignored = write(2, test_running_, strlen(test_running_));
  ignored = write(2, msg, sizeof msg - 1);
  (void)ignored;
  _exit(1);
}

static int test_run_one_(const test_case_ *t) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = test_on_alarm_;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGALRM, &sa, NULL);
  test_running_ = t->name;
  alarm(TEST_ALARM_SECONDS);
  t->fn();
  alarm(0);
  printf("ok %s\n", t->name);
  fflush(stdout);
  return 0;
}

/* Every case in a child of its own; returns how many failed. */
static int test_run_all_(void) {
  int failed = 0;
  for (int i = 0; i < test_ncases_; i++) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
      perror("fork");
      return test_ncases_;
    }
    if (pid == 0) exit(test_run_one_(&test_cases_[i]));
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      printf("FAILED %s (%s %d)\n", test_cases_[i].name,
             WIFEXITED(status) ? "exit status" : "signal",
             WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
      failed++;
    }
  }
  printf("%d of %d cases passed\n", test_ncases_ - failed, test_ncases_);
  return failed;
}

int main(int argc, char **argv) {
  if (argc == 1) return test_run_all_() == 0 ? 0 : 1;
  if (argc == 2 && strcmp(argv[1], "--list") == 0) {
    for (int i = 0; i < test_ncases_; i++) printf("%s\n", test_cases_[i].name);
    return 0;
  }
  if (argc == 2 && argv[1][0] != '-') {
    const test_case_ *t = test_find_(argv[1]);
    if (t == NULL) {
      fprintf(stderr, "%s: no test case named \"%s\" (see --list)\n", argv[0],
              argv[1]);
      return 2;
    }
    return test_run_one_(t);
  }
  fprintf(stderr, "usage: %s [--list | case_name]\n", argv[0]);
  return 2;
}

#endif
