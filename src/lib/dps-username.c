/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgeprov/codec.h"
#include "edgeprov/dps.h"
#include "edgeprov/macro.h"

static bool char_is_alnum(char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool registration_id_is_valid_n(const char *id, size_t l) {
        if (l == 0 || l > DPS_REGISTRATION_ID_MAX)
                return false;
        for (size_t i = 0; i < l; i++)
                if (!char_is_alnum(id[i]) && !strchr(".:_-", id[i]))
                        return false;
        return char_is_alnum(id[0]) && char_is_alnum(id[l - 1]);
}

bool dps_registration_id_is_valid(const char *id) {
        if (!id)
                return false;
        return registration_id_is_valid_n(id, strnlen(id, DPS_REGISTRATION_ID_MAX + 1));
}

static bool id_scope_is_valid_n(const char *scope, size_t l) {
        if (l == 0 || l > DPS_ID_SCOPE_MAX)
                return false;
        for (size_t i = 0; i < l; i++)
                if (!char_is_alnum(scope[i]))
                        return false;
        return true;
}

bool dps_id_scope_is_valid(const char *scope) {
        if (!scope)
                return false;
        return id_scope_is_valid_n(scope, strnlen(scope, DPS_ID_SCOPE_MAX + 1));
}

static bool api_version_is_valid(const char *v) {
        if (isempty(v) || strlen(v) > 64)
                return false;
        for (const char *i = v; *i; i++)
                if (!char_is_alnum(*i) && *i != '-' && *i != '.')
                        return false;
        return true;
}

static bool string_is_printable(const char *s) {
        for (const unsigned char *i = (const unsigned char *) s; *i; i++)
                if (*i < 0x20 || *i == 0x7f)
                        return false;
        return true;
}

void dps_username_done(DpsUsername *u) {
        if (!u)
                return;
        free(u->id_scope);
        free(u->registration_id);
        free(u->api_version);
        free(u->client_version);
        *u = (DpsUsername) {};
}

int dps_username_parse(const char *username, DpsUsername *ret) {
        _cleanup_(dps_username_done) DpsUsername u = {};
        int r;

        if (!username || !ret)
                return -EINVAL;
        if (strnlen(username, DPS_USERNAME_MAX + 1) > DPS_USERNAME_MAX)
                return -E2BIG;

        const char *m = strstr(username, "/registrations/");
        if (!m)
                return -EINVAL;
        if (!id_scope_is_valid_n(username, m - username))
                return -EINVAL;

        const char *id = m + strlen("/registrations/");
        const char *slash = strchr(id, '/');
        if (!slash) /* no query, hence no api-version */
                return -EINVAL;
        if (!registration_id_is_valid_n(id, slash - id))
                return -EINVAL;

        u.id_scope = strndup(username, m - username);
        u.registration_id = strndup(id, slash - id);
        if (!u.id_scope || !u.registration_id)
                return -ENOMEM;

        /* Query-like part: k=v pairs separated by '&'.  Python percent-encodes the values
         * (and would leave the keys alone), the C SDKs send ClientVersion verbatim. */
        const char *p = slash + 1;
        if (!*p)
                return -EINVAL;

        for (;;) {
                size_t fl = strcspn(p, "&");
                const char *eq = memchr(p, '=', fl);

                if (fl > 0 && eq) {
                        size_t kl = eq - p;
                        const char *v = eq + 1;
                        size_t vl = fl - kl - 1;

                        if (kl == strlen("api-version") && strncasecmp(p, "api-version", kl) == 0) {
                                if (u.api_version)
                                        return -EINVAL;
                                r = url_decode(v, vl, &u.api_version);
                                if (r < 0)
                                        return r;
                                if (!api_version_is_valid(u.api_version))
                                        return -EINVAL;
                        } else if (kl == strlen("ClientVersion") && strncasecmp(p, "ClientVersion", kl) == 0) {
                                if (u.client_version)
                                        return -EINVAL;
                                r = url_decode(v, vl, &u.client_version);
                                if (r == -EINVAL) {
                                        /* Not percent-encoding after all (a verbatim agent
                                         * containing a stray '%'): keep it raw. */
                                        u.client_version = strndup(v, vl);
                                        if (!u.client_version)
                                                return -ENOMEM;
                                } else if (r < 0)
                                        return r;
                                if (!string_is_printable(u.client_version))
                                        return -EINVAL;
                        }
                        /* anything else: ignored */
                }
                /* Empty segments and segments without '=' (a verbatim agent with '&' in it)
                 * are ignored as well. */

                if (!p[fl])
                        break;
                p += fl + 1;
        }

        if (!u.api_version)
                return -EINVAL;

        *ret = u;
        u = (DpsUsername) {};
        return 0;
}

int dps_username_format(const char *id_scope, const char *registration_id, const char *api_version,
                        const char *client_version, char **ret) {
        _cleanup_free_ char *cv = NULL, *s = NULL;
        int r;

        if (!ret || !dps_id_scope_is_valid(id_scope) || !dps_registration_id_is_valid(registration_id))
                return -EINVAL;
        if (!api_version)
                api_version = DPS_API_VERSION_DEFAULT;
        if (!api_version_is_valid(api_version))
                return -EINVAL;

        if (client_version) {
                if (!string_is_printable(client_version))
                        return -EINVAL;
                r = url_encode(client_version, /* lower= */ false, &cv);
                if (r < 0)
                        return r;
        }

        if (asprintf(&s, "%s/registrations/%s/api-version=%s%s%s", id_scope, registration_id, api_version,
                     cv ? "&ClientVersion=" : "", strempty(cv)) < 0) {
                s = NULL;
                return -ENOMEM;
        }
        if (strlen(s) > DPS_USERNAME_MAX)
                return -E2BIG;

        *ret = TAKE_PTR(s);
        return 0;
}
