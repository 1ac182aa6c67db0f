/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "edgeprov/fileio.h"
#include "edgeprov/macro.h"

static char *path_join(const char *dir, const char *name) {
        char *p = NULL;
        assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
        return p;
}

static void write_plain(const char *path, const char *data, size_t len, mode_t mode) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, len), (ssize_t) len);
        assert_int_equal(fchmod(fd, mode), 0);
        assert_int_equal(close(fd), 0);
}

static size_t count_entries(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *de;
        size_t n = 0;

        assert_non_null(d);
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        n++;
        closedir(d);
        return n;
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) chmod(path, 0700);
        return remove(path);
}

static int setup(void **state) {
        const char *tmp = getenv("TMPDIR");
        char *d = NULL;
        if (asprintf(&d, "%s/test-fileio.XXXXXX", isempty(tmp) ? "/tmp" : tmp) < 0)
                return -1;
        if (!mkdtemp(d)) {
                free(d);
                return -1;
        }
        *state = d;
        return 0;
}

static int teardown(void **state) {
        char *d = *state;
        (void) chmod(d, 0700);
        (void) nftw(d, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
        free(d);
        return 0;
}

static void test_atomic_create_and_replace(void **state) {
        const char *dir = *state;
        _cleanup_free_ char *p = path_join(dir, "state.json"), *buf = NULL, *buf2 = NULL;
        struct stat st1, st2;
        size_t len = 0;

        mode_t old = umask(0022);
        assert_int_equal(write_file_atomic(p, "first", 5, 0600), 0);
        assert_int_equal(stat(p, &st1), 0);
        assert_true(S_ISREG(st1.st_mode));
        assert_int_equal(st1.st_mode & 07777, 0600);
        assert_int_equal(read_file_full(p, 100, &buf, &len), 0);
        assert_int_equal(len, 5);
        assert_string_equal(buf, "first");

        /* replace: new content, new inode, requested mode even against a strict umask */
        umask(0077);
        assert_int_equal(write_file_atomic(p, "second content", 14, 0644), 0);
        umask(old);
        assert_int_equal(stat(p, &st2), 0);
        assert_int_equal(st2.st_mode & 07777, 0644);
        assert_true(st1.st_ino != st2.st_ino);
        assert_int_equal(read_file_full(p, 100, &buf2, &len), 0);
        assert_int_equal(len, 14);
        assert_string_equal(buf2, "second content");

        /* no temporary file left behind */
        assert_int_equal(count_entries(dir), 1);
}

static void test_atomic_empty_and_large(void **state) {
        const char *dir = *state;
        _cleanup_free_ char *p = path_join(dir, "big"), *e = path_join(dir, "empty"), *buf = NULL, *buf2 = NULL;
        size_t n = 3 * 1024 * 1024 + 7, len = 0;
        _cleanup_free_ char *data = malloc(n);

        assert_non_null(data);
        for (size_t i = 0; i < n; i++)
                data[i] = (char) (i * 7 + 3);
        assert_int_equal(write_file_atomic(p, data, n, 0600), 0);
        assert_int_equal(read_file_full(p, n, &buf, &len), 0);
        assert_int_equal(len, n);
        assert_memory_equal(buf, data, n);

        assert_int_equal(write_file_atomic(e, NULL, 0, 0600), 0);
        assert_int_equal(read_file_full(e, 0, &buf2, &len), 0);
        assert_int_equal(len, 0);
        assert_string_equal(buf2, "");
        assert_int_equal(count_entries(dir), 2);
}

static void test_atomic_relative(void **state) {
        const char *dir = *state;
        _cleanup_free_ char *buf = NULL;
        char cwd[4096];

        assert_non_null(getcwd(cwd, sizeof(cwd)));
        assert_int_equal(chdir(dir), 0);
        assert_int_equal(write_file_atomic("rel", "x", 1, 0600), 0);
        assert_int_equal(chdir(cwd), 0);

        _cleanup_free_ char *p = path_join(dir, "rel");
        assert_int_equal(read_file_full(p, 10, &buf, NULL), 0);
        assert_string_equal(buf, "x");
}

static void test_atomic_failures(void **state) {
        const char *dir = *state;
        _cleanup_free_ char *file = path_join(dir, "file"), *under_file = path_join(dir, "file/x"),
                            *missing = path_join(dir, "nonexistent/x"), *subdir = path_join(dir, "subdir"),
                            *inner = path_join(dir, "subdir/keep"), *buf = NULL;

        write_plain(file, "old", 3, 0600);

        /* parent is a regular file: fails before anything is created */
        assert_int_equal(write_file_atomic(under_file, "new", 3, 0600), -ENOTDIR);
        assert_int_equal(write_file_atomic(missing, "new", 3, 0600), -ENOENT);

        /* target is a non-empty directory: the temp file is written, the rename fails, the temp
         * file goes away and the directory stays */
        assert_int_equal(mkdir(subdir, 0755), 0);
        write_plain(inner, "keep", 4, 0600);
        int r = write_file_atomic(subdir, "new", 3, 0600);
        assert_true(r == -EISDIR || r == -ENOTEMPTY || r == -EEXIST);
        struct stat st;
        assert_int_equal(stat(subdir, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(count_entries(dir), 2); /* file, subdir: no leftovers */
        assert_int_equal(count_entries(subdir), 1);

        /* the old file is untouched by all of this */
        size_t len = 0;
        assert_int_equal(read_file_full(file, 100, &buf, &len), 0);
        assert_string_equal(buf, "old");

        /* bad arguments */
        assert_int_equal(write_file_atomic("", "x", 1, 0600), -EINVAL);
        assert_int_equal(write_file_atomic(file, NULL, 1, 0600), -EINVAL);
        _cleanup_free_ char *slash = path_join(dir, "");
        assert_int_equal(write_file_atomic(slash, "x", 1, 0600), -EISDIR);
}

static void test_atomic_readonly_dir(void **state) {
        const char *dir = *state;

        if (geteuid() == 0)
                skip(); /* root ignores directory permissions; covered by test_atomic_failures */

        _cleanup_free_ char *ro = path_join(dir, "ro"), *file = path_join(dir, "ro/file"), *buf = NULL;
        assert_int_equal(mkdir(ro, 0755), 0);
        write_plain(file, "old", 3, 0600);
        assert_int_equal(chmod(ro, 0555), 0);

        assert_int_equal(write_file_atomic(file, "new", 3, 0600), -EACCES);
        assert_int_equal(read_file_full(file, 100, &buf, NULL), 0);
        assert_string_equal(buf, "old");
        assert_int_equal(count_entries(ro), 1);
        assert_int_equal(chmod(ro, 0755), 0);
}

static void test_read_file_full(void **state) {
        const char *dir = *state;
        _cleanup_free_ char *p = path_join(dir, "f"), *bin = path_join(dir, "bin"), *a = NULL, *b = NULL, *c = NULL,
                            *d = NULL;
        size_t len = 0;

        write_plain(p, "0123456789", 10, 0644);
        assert_int_equal(read_file_full(p, 10, &a, &len), 0);
        assert_int_equal(len, 10);
        assert_string_equal(a, "0123456789");

        char *x = (char *) 0x1;
        len = 77;
        assert_int_equal(read_file_full(p, 9, &x, &len), -EFBIG);
        assert_int_equal(read_file_full(p, 0, &x, &len), -EFBIG);
        assert_ptr_equal(x, (char *) 0x1);
        assert_int_equal(len, 77);

        /* binary content, NUL-terminated, length excludes the NUL */
        write_plain(bin, "a\0b\0", 4, 0644);
        assert_int_equal(read_file_full(bin, 4, &b, &len), 0);
        assert_int_equal(len, 4);
        assert_memory_equal(b, "a\0b\0", 5);

        assert_int_equal(read_file_full(dir, 100, &x, NULL), -EISDIR);
        _cleanup_free_ char *missing = path_join(dir, "missing");
        assert_int_equal(read_file_full(missing, 100, &x, NULL), -ENOENT);
        assert_int_equal(read_file_full("/dev/null", 100, &x, NULL), -EBADFD);
        assert_ptr_equal(x, (char *) 0x1);

        /* files that report st_size 0 but have content */
        assert_int_equal(read_file_full("/proc/self/status", 16, &x, NULL), -EFBIG);
        assert_int_equal(read_file_full("/proc/self/status", 1024 * 1024, &c, &len), 0);
        assert_true(len > 16);
        assert_non_null(strstr(c, "Name:"));
        assert_int_equal(strlen(c), len);

        /* growth across the initial buffer */
        _cleanup_free_ char *big = path_join(dir, "big");
        char data[10000];
        memset(data, 'q', sizeof(data));
        write_plain(big, data, sizeof(data), 0644);
        assert_int_equal(read_file_full(big, sizeof(data), &d, &len), 0);
        assert_int_equal(len, sizeof(data));
        assert_memory_equal(d, data, sizeof(data));
}

static void test_read_secret_file(void **state) {
        const char *dir = *state;
        _cleanup_free_ char *p = path_join(dir, "key");
        static const struct {
                const char *content;
                size_t len;
                const char *expected;
        } v[] = {
                { "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=\n", 45, "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=" },
                { "secret", 6, "secret" },
                { "secret\r\n", 8, "secret" },
                { "secret\n\n", 8, "secret\n" },
                { "\n", 1, "" },
                { "", 0, "" },
        };

        for (size_t i = 0; i < ELEMENTSOF(v); i++) {
                _cleanup_free_ char *s = NULL;
                write_plain(p, v[i].content, v[i].len, 0600);
                assert_int_equal(read_secret_file(p, 1024, &s), 0);
                assert_string_equal(s, v[i].expected);
        }

        /* group access is allowed, "other" access is not */
        write_plain(p, "secret\n", 7, 0640);
        _cleanup_free_ char *g = NULL;
        assert_int_equal(read_secret_file(p, 1024, &g), 0);
        assert_string_equal(g, "secret");

        const mode_t refused[] = { 0604, 0602, 0601, 0644, 0666 };
        for (size_t i = 0; i < ELEMENTSOF(refused); i++) {
                char *x = (char *) 0x1;
                assert_int_equal(chmod(p, refused[i]), 0);
                assert_int_equal(read_secret_file(p, 1024, &x), -EPERM);
                assert_ptr_equal(x, (char *) 0x1);
        }

        char *x = (char *) 0x1;
        write_plain(p, "secret\n", 7, 0600);
        assert_int_equal(read_secret_file(p, 6, &x), -EFBIG);
        write_plain(p, "sec\0ret", 7, 0600);
        assert_int_equal(read_secret_file(p, 1024, &x), -EBADMSG);
        assert_int_equal(read_secret_file(dir, 1024, &x), -EISDIR);
        assert_ptr_equal(x, (char *) 0x1);
}

static void test_mkdir_p(void **state) {
        const char *dir = *state;
        _cleanup_free_ char *deep = path_join(dir, "a/b//c/"), *c = path_join(dir, "a/b/c"), *b = path_join(dir, "a/b"),
                            *file = path_join(dir, "f"), *under = path_join(dir, "f/x");
        struct stat st;

        mode_t old = umask(0);
        assert_int_equal(mkdir_p(deep, 0700), 0);
        umask(old);
        assert_int_equal(stat(c, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0700);
        assert_int_equal(stat(b, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0755);

        /* idempotent */
        assert_int_equal(mkdir_p(c, 0700), 0);
        assert_int_equal(mkdir_p("/", 0755), 0);

        write_plain(file, "x", 1, 0600);
        assert_int_equal(mkdir_p(file, 0700), -ENOTDIR);
        assert_int_equal(mkdir_p(under, 0700), -ENOTDIR);
        assert_int_equal(mkdir_p("", 0700), -EINVAL);
}

/* reliability (issue 8): temporary files left by a process killed inside write_file_atomic() */
static void test_unlink_stale_temp_files(void **state) {
        const char *dir = *state;
        _cleanup_free_ char *good = path_join(dir, "state.json"), *t1 = path_join(dir, ".#state.json.AbCdEf"),
                            *t2 = path_join(dir, ".#other.json.XyZ123"), *keep = path_join(dir, ".hidden");
        struct stat st;

        write_plain(good, "{}", 2, 0600);
        write_plain(t1, "{", 1, 0600);
        write_plain(t2, "[", 1, 0600);
        write_plain(keep, "x", 1, 0600);
        /* one base: only its temporary files */
        assert_int_equal(unlink_stale_temp_files(dir, "state.json"), 1);
        assert_int_not_equal(stat(t1, &st), 0);
        assert_int_equal(stat(t2, &st), 0);
        /* every ".#*": the other temporary file, never the real files or other dot files */
        assert_int_equal(unlink_stale_temp_files(dir, NULL), 1);
        assert_int_not_equal(stat(t2, &st), 0);
        assert_int_equal(stat(good, &st), 0);
        assert_int_equal(stat(keep, &st), 0);
        assert_int_equal(unlink_stale_temp_files(dir, NULL), 0);
        /* a missing directory is nothing to clean */
        _cleanup_free_ char *missing = path_join(dir, "nope");
        assert_int_equal(unlink_stale_temp_files(missing, NULL), 0);
        assert_int_equal(unlink_stale_temp_files("", NULL), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_atomic_create_and_replace, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unlink_stale_temp_files, setup, teardown),
                cmocka_unit_test_setup_teardown(test_atomic_empty_and_large, setup, teardown),
                cmocka_unit_test_setup_teardown(test_atomic_relative, setup, teardown),
                cmocka_unit_test_setup_teardown(test_atomic_failures, setup, teardown),
                cmocka_unit_test_setup_teardown(test_atomic_readonly_dir, setup, teardown),
                cmocka_unit_test_setup_teardown(test_read_file_full, setup, teardown),
                cmocka_unit_test_setup_teardown(test_read_secret_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_mkdir_p, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
