/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "dps/webhook.h"
#include "edgeprov/macro.h"

typedef struct Transfer {
        CURL *easy;
        struct curl_slist *headers;
        char *request;
        char *response;
        size_t response_len;
        bool too_large;
        DpsWebhookDone cb;
        void *userdata;
        char error[CURL_ERROR_SIZE];
        struct Transfer *next;
} Transfer;

struct DpsWebhook {
        CURLM *multi;
        Transfer *transfers;
        size_t n_running;
        unsigned timeout_msec;
        char *cafile;
};

int dps_webhook_url_is_valid(const char *url) {
        if (!url)
                return false;
        size_t l = strnlen(url, DPS_WEBHOOK_URL_MAX + 1);
        if (l == 0 || l > DPS_WEBHOOK_URL_MAX)
                return false;
        if (!startswith(url, "http://") && !startswith(url, "https://"))
                return false;
        for (size_t i = 0; i < l; i++)
                if ((unsigned char) url[i] <= 0x20 || (unsigned char) url[i] >= 0x7f)
                        return false;
        return true;
}

int dps_webhook_new(DpsWebhook **ret) {
        static bool initialized = false;

        if (!ret)
                return -EINVAL;
        if (!initialized) {
                /* once per process; the plugin is loaded once */
                if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                        return -EIO;
                initialized = true;
        }
        DpsWebhook *w = calloc(1, sizeof(DpsWebhook));
        if (!w)
                return -ENOMEM;
        w->multi = curl_multi_init();
        if (!w->multi) {
                free(w);
                return -ENOMEM;
        }
        w->timeout_msec = DPS_WEBHOOK_TIMEOUT_MSEC_DEFAULT;
        *ret = w;
        return 0;
}

static void transfer_free(DpsWebhook *w, Transfer *t) {
        if (t->easy) {
                curl_multi_remove_handle(w->multi, t->easy);
                curl_easy_cleanup(t->easy);
        }
        curl_slist_free_all(t->headers);
        free(t->request);
        free(t->response);
        free(t);
}

static void transfer_unlink(DpsWebhook *w, Transfer *t) {
        for (Transfer **p = &w->transfers; *p; p = &(*p)->next)
                if (*p == t) {
                        *p = t->next;
                        w->n_running--;
                        return;
                }
}

DpsWebhook *dps_webhook_free(DpsWebhook *w) {
        Transfer *t;

        if (!w)
                return NULL;
        while ((t = w->transfers)) {
                transfer_unlink(w, t);
                t->cb(t->userdata, 0, NULL, 0, -ECANCELED, "cancelled");
                transfer_free(w, t);
        }
        curl_multi_cleanup(w->multi);
        free(w->cafile);
        free(w);
        return NULL;
}

void dps_webhook_set_timeout(DpsWebhook *w, unsigned msec) {
        if (w)
                w->timeout_msec = msec > 0 ? msec : DPS_WEBHOOK_TIMEOUT_MSEC_DEFAULT;
}

int dps_webhook_set_cafile(DpsWebhook *w, const char *path) {
        char *c = NULL;

        if (!w)
                return -EINVAL;
        if (path && !(c = strdup(path)))
                return -ENOMEM;
        free(w->cafile);
        w->cafile = c;
        return 0;
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata) {
        Transfer *t = userdata;
        size_t n = size * nmemb;

        if (n > DPS_WEBHOOK_RESPONSE_MAX - t->response_len) {
                t->too_large = true;
                return 0; /* aborts the transfer */
        }
        char *p = realloc(t->response, t->response_len + n + 1);
        if (!p)
                return 0;
        memcpy(p + t->response_len, ptr, n);
        t->response = p;
        t->response_len += n;
        t->response[t->response_len] = 0;
        return n;
}

int dps_webhook_post(DpsWebhook *w, const char *url, const char *body, DpsWebhookDone cb, void *userdata) {
        Transfer *t;
        CURLcode c = CURLE_OK;

        if (!w || !url || !body || !cb)
                return -EINVAL;
        if (!dps_webhook_url_is_valid(url))
                return -EINVAL;
        if (w->n_running >= DPS_WEBHOOK_MAX_RUNNING)
                return -EBUSY;

        t = calloc(1, sizeof(Transfer));
        if (!t)
                return -ENOMEM;
        t->cb = cb;
        t->userdata = userdata;
        t->request = strdup(body);
        t->easy = curl_easy_init();
        t->headers = curl_slist_append(NULL, "Content-Type: application/json");
        if (t->headers)
                t->headers = curl_slist_append(t->headers, "Accept: application/json") ?: t->headers;
        if (!t->request || !t->easy || !t->headers) {
                transfer_free(w, t);
                return -ENOMEM;
        }

#define SET(opt, val) \
        if (c == CURLE_OK) \
                c = curl_easy_setopt(t->easy, opt, val)
        SET(CURLOPT_URL, url);
        SET(CURLOPT_PROTOCOLS_STR, "http,https");
        SET(CURLOPT_NOSIGNAL, 1L);
        SET(CURLOPT_FOLLOWLOCATION, 0L);
        SET(CURLOPT_POST, 1L);
        SET(CURLOPT_POSTFIELDS, t->request);
        SET(CURLOPT_POSTFIELDSIZE, (long) strlen(t->request));
        SET(CURLOPT_HTTPHEADER, t->headers);
        SET(CURLOPT_USERAGENT, "edgeprov-dps");
        SET(CURLOPT_TIMEOUT_MS, (long) w->timeout_msec);
        SET(CURLOPT_CONNECTTIMEOUT_MS, (long) w->timeout_msec);
        SET(CURLOPT_WRITEFUNCTION, on_data);
        SET(CURLOPT_WRITEDATA, t);
        SET(CURLOPT_ERRORBUFFER, t->error);
        SET(CURLOPT_PRIVATE, t);
        SET(CURLOPT_SSL_VERIFYPEER, 1L);
        SET(CURLOPT_SSL_VERIFYHOST, 2L);
        if (w->cafile)
                SET(CURLOPT_CAINFO, w->cafile);
#undef SET
        if (c != CURLE_OK) {
                transfer_free(w, t);
                return c == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
        }
        if (curl_multi_add_handle(w->multi, t->easy) != CURLM_OK) {
                transfer_free(w, t);
                return -ENOMEM;
        }
        t->next = w->transfers;
        w->transfers = t;
        w->n_running++;
        return 0;
}

int dps_webhook_process(DpsWebhook *w) {
        int running = 0, left = 0;
        CURLMsg *m;

        if (!w)
                return -EINVAL;
        if (w->n_running == 0)
                return 0;
        /* non-blocking: does whatever the sockets allow right now */
        if (curl_multi_perform(w->multi, &running) != CURLM_OK)
                return -EIO;

        while ((m = curl_multi_info_read(w->multi, &left))) {
                Transfer *t = NULL;
                long status = 0;
                int error = 0;

                if (m->msg != CURLMSG_DONE)
                        continue;
                (void) curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **) &t);
                if (!t)
                        continue;
                CURLcode result = m->data.result;
                (void) curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
                if (result == CURLE_OPERATION_TIMEDOUT)
                        error = -ETIMEDOUT;
                else if (t->too_large)
                        error = -E2BIG;
                else if (result != CURLE_OK)
                        error = -EIO;
                transfer_unlink(w, t);
                t->cb(t->userdata, status, error == 0 ? (t->response ?: "") : NULL, error == 0 ? t->response_len : 0,
                      error, error == 0 ? NULL : (t->error[0] ? t->error : curl_easy_strerror(result)));
                transfer_free(w, t);
        }
        return 0;
}

size_t dps_webhook_n_running(const DpsWebhook *w) {
        return w ? w->n_running : 0;
}
