/* SPDX-License-Identifier: MIT */
/* Corpus replay for builds without libFuzzer: runs every file of
 * $FUZZ_CORPUS_DIR/<target>/ (target = program name without "fuzz-") through
 * LLVMFuzzerTestOneInput, or the files named on the command line. */
#ifndef EDGEPROV_LIBFUZZER

#include <dirent.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgeprov/fileio.h"
#include "edgeprov/macro.h"
#include "fuzz.h"

static int run_one(const char *path, unsigned *count) {
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        int r = read_file_full(path, 16 * 1024 * 1024, &buf, &len);
        if (r < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(-r));
                return r;
        }
        (void) LLVMFuzzerTestOneInput((const uint8_t *) buf, len);
        (*count)++;
        return 0;
}

int main(int argc, char *argv[]) {
        unsigned count = 0;

        if (argc > 1) {
                for (int i = 1; i < argc; i++)
                        if (run_one(argv[i], &count) < 0)
                                return EXIT_FAILURE;
                printf("%u inputs replayed\n", count);
                return EXIT_SUCCESS;
        }

        const char *base = getenv("FUZZ_CORPUS_DIR");
        if (!base)
                base = "tests/fuzz/corpus";
        _cleanup_free_ char *self = strdup(argv[0]);
        if (!self)
                return EXIT_FAILURE;
        const char *name = basename(self);
        const char *p = startswith(name, "lt-");
        if (p)
                name = p;
        p = startswith(name, "fuzz-");
        if (p)
                name = p;

        char dir[4096];
        snprintf(dir, sizeof(dir), "%s/%s", base, name);
        DIR *d = opendir(dir);
        if (!d) {
                fprintf(stderr, "corpus directory %s: %m\n", dir);
                return EXIT_FAILURE;
        }
        struct dirent *de;
        int ret = EXIT_SUCCESS;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                char path[8192];
                snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
                if (run_one(path, &count) < 0)
                        ret = EXIT_FAILURE;
        }
        closedir(d);
        if (count == 0) {
                fprintf(stderr, "corpus directory %s is empty\n", dir);
                return EXIT_FAILURE;
        }
        printf("%s: %u inputs replayed\n", name, count);
        return ret;
}

#endif
