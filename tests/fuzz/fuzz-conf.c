/* SPDX-License-Identifier: MIT */
#include <stdlib.h>
#include <string.h>

#include "agent/conf.h"
#include "edgeprov/macro.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *text = NULL, *err = NULL;
        Config c;

        if (size > 64 * 1024)
                return 0;
        text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = 0;
        conf_init(&c);
        if (conf_apply_string(&c, text, "fuzz.conf", &err) >= 0)
                (void) conf_verify(&c, &err);
        conf_done(&c);
        return 0;
}
