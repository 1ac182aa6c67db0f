/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "agent/attest.h"
#include "agent/x509-identity.h"
#include "agent/backoff.h"
#include "agent/dps-client.h"
#include "agent/manager.h"
#include "edgeprov/codec.h"
#include "edgeprov/fileio.h"
#include "edgeprov/log.h"
#include "edgeprov/macro.h"
#include "edgeprov/messages.h"
#include "edgeprov/sas.h"
#include "edgeprov/time-util.h"

#define USEC_PER_SEC ((uint64_t) 1000000)

struct Manager {
        sd_event *event;
        Config config;
        GatewayState assignment;
        char *key_b64;          /* secret */
        char *fingerprint;
        DpsClient *client;
        Backoff backoff;
        sd_event_source *retry_timer;
        ManagerState state;
        unsigned attempt;
        char *last_error;
        int exit_status;
        /* change notification for the D-Bus layer (bus.c) */
        uint64_t next_retry_realtime_usec;
        ManagerChangedCallback changed_cb;
        void *changed_userdata;
        /* TPM attestation (attest.c): NULL for symmetric keys */
        TpmAttestation *tpm;
        bool tpm_answering;     /* the challenge is activated: this attempt signs with the TPM */
        uint64_t start_usec;    /* CLOCK_MONOTONIC at manager_start, for the timing report */
        uint64_t token_expiry;  /* `se` of the last SAS token (seconds since the epoch) */
        X509Identity *x509;     /* X.509 attestation (x509-identity.c, issue 6): NULL otherwise */
};

static const char *const manager_state_table[_MANAGER_STATE_MAX] = {
        [MANAGER_STARTING] = "starting",
        [MANAGER_PROVISIONING] = "provisioning",
        [MANAGER_ASSIGNED] = "assigned",
        [MANAGER_RETRYING] = "retrying",
        [MANAGER_REJECTED] = "rejected",
};

const char *manager_state_to_string(ManagerState s) {
        return s >= 0 && s < _MANAGER_STATE_MAX ? manager_state_table[s] : NULL;
}

ManagerState manager_get_state(const Manager *m) {
        return m->state;
}

const GatewayState *manager_get_assignment(const Manager *m) {
        return gateway_state_is_committed(&m->assignment) ? &m->assignment : NULL;
}

int manager_exit_status(const Manager *m) {
        return m->exit_status;
}

_printf_(2, 3) static void manager_set_status(Manager *m, const char *fmt, ...) {
        _cleanup_free_ char *text = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&text, fmt, ap) < 0)
                text = NULL;
        va_end(ap);
        if (text)
                (void) sd_notifyf(false, "STATUS=%s", text);
}

static void manager_notify(Manager *m) {
        if (m->changed_cb)
                m->changed_cb(m, m->changed_userdata);
}

/* Every branch changes last_error/assignment first and then the state, so notifying here
 * covers them all; the subscriber compares values and emits only what changed. */
static void manager_set_state(Manager *m, ManagerState s) {
        if (m->state != s) {
                log_debug("State %s → %s.", manager_state_to_string(m->state), manager_state_to_string(s));
                m->state = s;
        }
        if (s != MANAGER_RETRYING && s != MANAGER_REJECTED)
                m->next_retry_realtime_usec = 0;
        manager_notify(m);
}

int manager_new(sd_event *e, Config *config, Manager **ret) {
        Manager *m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->event = sd_event_ref(e);
        m->config = *config;
        conf_init(config);
        if (!m->config.state_directory) {
                m->config.state_directory = strdup(EDGEPROV_DEFAULT_STATE_DIR);
                if (!m->config.state_directory) {
                        manager_free(m);
                        return -ENOMEM;
                }
        }
        backoff_init(&m->backoff, (uint64_t) m->config.retry_initial * USEC_PER_SEC,
                     (uint64_t) m->config.retry_max * USEC_PER_SEC);
        m->state = MANAGER_STARTING;
        *ret = m;
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        m->client = dps_client_free(m->client);
        m->retry_timer = sd_event_source_disable_unref(m->retry_timer);
        gateway_state_done(&m->assignment);
        m->key_b64 = erase_and_free(m->key_b64);
        m->tpm = tpm_attestation_free(m->tpm);
        m->x509 = x509_identity_free(m->x509);
        free(m->fingerprint);
        free(m->last_error);
        conf_done(&m->config);
        sd_event_unref(m->event);
        free(m);
        return NULL;
}

/* ---- TPM attestation (attest.c), kept apart from the rest of the state machine ---- */

static void manager_handle_result(Manager *m, const DpsResult *res);
static void manager_schedule_retry(Manager *m, uint64_t delay_usec);
static int manager_provision(Manager *m);


/* The TPM identity stands in for the key: the EK goes into the fingerprint, the
 * registration id is derived from it unless configured. */
static int manager_load_tpm(Manager *m) {
        int r;

        m->start_usec = clock_now_usec(CLOCK_MONOTONIC);
        r = tpm_attestation_new(&m->config, &m->tpm);
        if (r < 0)
                return r;
        r = tpm_attestation_load_identity(m->tpm);
        if (r < 0)
                return r;
        if (!m->config.registration_id) {
                m->config.registration_id = strdup(tpm_attestation_registration_id(m->tpm));
                if (!m->config.registration_id)
                        return log_oom();
                log_info("TPM: registration id derived from the endorsement key: %s", m->config.registration_id);
        }
        m->key_b64 = strdup(tpm_attestation_ek_b64(m->tpm));
        return m->key_b64 ? 0 : log_oom();
}

/* The MQTT password: a SAS token from the key file, or for TPM attestation none (the first
 * attempt gets the challenge) or one signed inside the TPM. */
static int manager_make_password(Manager *m, const char *resource, uint64_t expiry, char **ret) {
        if (m->x509) {
                *ret = NULL; /* X.509: the TLS client certificate authenticates, no password */
                return 0;
        }
        if (!m->tpm)
                return sas_token_build_b64(m->key_b64, resource, expiry, SAS_DEFAULT_KEY_NAME, ret);
        if (!m->tpm_answering) {
                *ret = NULL;
                return 0;
        }
        return tpm_attestation_sign(m->tpm, resource, expiry, ret);
}

/* Returns true when the result was the TPM challenge and has been dealt with. */
static bool manager_tpm_on_result(Manager *m, DpsClient *c, const DpsResult *res) {
        _cleanup_free_ char *challenge = NULL;
        int r;

        if (!res->authentication_key || m->tpm_answering) {
                /* any other outcome: the next attempt starts with a new challenge */
                m->tpm_answering = false;
                if (res->outcome != DPS_OUTCOME_ASSIGNED)
                        tpm_attestation_abort(m->tpm);
                return false;
        }
        challenge = strdup(res->authentication_key);
        if (m->client == c)
                m->client = dps_client_free(m->client);
        if (!challenge) {
                log_oom();
                return false;
        }
        r = tpm_attestation_activate(m->tpm, challenge);
        if (r < 0) {
                /* also LastError on D-Bus, where there is no "above": name the cause */
                char msg[160];
                snprintf(msg, sizeof(msg), "%s: %s (see the log)",
                         r == -EBADMSG ? "the TPM refused the service's authenticationKey"
                                       : "the TPM could not activate the authenticationKey",
                         strerror(-r));
                DpsResult fail = { .outcome = r == -EBADMSG ? DPS_OUTCOME_REJECTED : DPS_OUTCOME_TRANSIENT,
                                   .status = 401,
                                   .retry_after = -1,
                                   .error_message = msg };
                manager_handle_result(m, &fail);
                return true;
        }
        m->tpm_answering = true;
        r = manager_provision(m);
        if (r < 0 && m->state != MANAGER_RETRYING) {
                m->tpm_answering = false;
                manager_set_state(m, MANAGER_RETRYING);
                manager_schedule_retry(m, backoff_next(&m->backoff));
        }
        return true;
}

/* X.509: the certificate chain and key (file or TPM); the registration id is the CN, and the
 * leaf's thumbprint stands in for the key in the identity fingerprint. */
static int manager_load_x509(Manager *m) {
        _cleanup_free_ char *error = NULL;
        int r = x509_identity_load(&m->config, &m->x509, &error);
        if (r < 0)
                return log_error_errno(r, "X.509 attestation: %s", error ?: strerror(-r));
        if (!m->config.registration_id) {
                m->config.registration_id = strdup(x509_identity_registration_id(m->x509));
                if (!m->config.registration_id)
                        return log_oom();
        }
        m->key_b64 = strdup(x509_identity_thumbprint(m->x509));
        return m->key_b64 ? 0 : log_oom();
}

static int manager_load_key(Manager *m) {
        if (m->config.attestation == ATTESTATION_TPM)
                return manager_load_tpm(m);
        if (m->config.attestation == ATTESTATION_X509)
                return manager_load_x509(m);

        _cleanup_free_ char *error = NULL;
        int r = conf_read_key(&m->config, &m->key_b64, &error);
        if (r < 0)
                return log_error_errno(r, "%s", strna(error));
        return 0;
}

static int on_retry_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        m->retry_timer = sd_event_source_disable_unref(m->retry_timer);
        (void) manager_provision(m);
        return 0;
}

static void manager_schedule_retry(Manager *m, uint64_t delay_usec) {
        int r;

        m->retry_timer = sd_event_source_disable_unref(m->retry_timer);
        r = sd_event_add_time_relative(m->event, &m->retry_timer, CLOCK_BOOTTIME, delay_usec, USEC_PER_SEC / 10,
                                       on_retry_timer, m);
        if (r < 0)
                log_error_errno(r, "Failed to arm the retry timer: %m");
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        m->next_retry_realtime_usec = r < 0 ? 0 : (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000 + delay_usec;
        manager_notify(m);
}

static void manager_handle_result(Manager *m, const DpsResult *res) {
        char f_reg[192], f_hub[320], f_dev[192], f_op[320], f_att[32], f_code[48], f_status[32];
        int r;

        log_field(f_reg, sizeof(f_reg), "REGISTRATION_ID", m->config.registration_id);
        log_field(f_op, sizeof(f_op), "OPERATION_ID", res->operation_id);
        snprintf(f_att, sizeof(f_att), "ATTEMPT=%u", m->attempt);
        snprintf(f_code, sizeof(f_code), "DPS_ERROR_CODE=%" PRIi64, res->error_code);
        snprintf(f_status, sizeof(f_status), "DPS_STATUS=%u", res->status);

        switch (res->outcome) {
        case DPS_OUTCOME_ASSIGNED: {
                GatewayState s = {
                        .registration_id = strdup(m->config.registration_id),
                        .device_id = strdup(res->device_id),
                        .assigned_hub = strdup(res->assigned_hub),
                        .substatus = res->substatus ? strdup(res->substatus) : NULL,
                        .operation_id = res->operation_id ? strdup(res->operation_id) : NULL,
                        .attestation = strdup(attestation_method_to_string(m->config.attestation)),
                        .fingerprint = strdup(m->fingerprint),
                        .endpoint = strdup(m->config.endpoint),
                        .id_scope = strdup(m->config.id_scope),
                        .tpm_key_slot = m->tpm ? tpm_attestation_pending_slot_string(m->tpm) : NULL,
                        .provisioned_at = (uint64_t) time(NULL),
                };
                if (!gateway_state_is_committed(&s) || !s.attestation || !s.fingerprint || !s.endpoint || !s.id_scope)
                        r = -ENOMEM;
                else
                        r = gateway_state_save(m->config.state_directory, &s);
                if (r < 0) {
                        gateway_state_done(&s);
                        log_struct_errno(LOG_ERR, r, STRV(EDGEPROV_MESSAGE_ID(STATE_WRITE_FAILED), f_reg),
                                         "Assigned, but cannot commit the assignment to '%s/%s': %m. Will provision again.",
                                         m->config.state_directory, STATE_FILE_NAME);
                        free(m->last_error);
                        m->last_error = strdup("cannot write the state file");
                        manager_set_state(m, MANAGER_RETRYING);
                        uint64_t d = backoff_next(&m->backoff);
                        manager_set_status(m, "Cannot write state, retrying in %" PRIu64 " s", d / USEC_PER_SEC);
                        manager_schedule_retry(m, d);
                        return;
                }
                gateway_state_done(&m->assignment);
                m->assignment = s;
                if (m->tpm) {
                        /* the new key is in use only now that its assignment is committed */
                        uint64_t total = clock_now_usec(CLOCK_MONOTONIC) - m->start_usec, tpm = tpm_attestation_take_tpm_usec(m->tpm);
                        tpm_attestation_commit(m->tpm);
                        log_info("TPM attestation: start to assigned %.1f ms, of which TPM %.1f ms and "
                                 "network/service %.1f ms (key slot %s).",
                                 total / 1000.0, tpm / 1000.0, (total - MIN(tpm, total)) / 1000.0,
                                 strna(s.tpm_key_slot));
                }
                backoff_reset(&m->backoff);
                free(m->last_error);
                m->last_error = NULL;
                manager_set_state(m, MANAGER_ASSIGNED);
                log_field(f_hub, sizeof(f_hub), "HUB", s.assigned_hub);
                log_field(f_dev, sizeof(f_dev), "DEVICE_ID", s.device_id);
                log_struct(LOG_NOTICE, STRV(EDGEPROV_MESSAGE_ID(ASSIGNED), f_reg, f_hub, f_dev, f_op, f_att),
                           "Gateway '%s' assigned to hub '%s' as device '%s' (%s).", s.registration_id, s.assigned_hub,
                           s.device_id, strna(s.substatus));
                manager_set_status(m, "Assigned to %s as %s", s.assigned_hub, s.device_id);
                return;
        }
        case DPS_OUTCOME_REJECTED:
                free(m->last_error);
                m->last_error = NULL;
                if (res->status == 401 && res->error_message && strcasestr(res->error_message, "expired") &&
                    m->token_expiry > 0) {
                        /* the token was made sas_lifetime from now: one of the two clocks is off */
                        char when[64] = "?";
                        time_t t = (time_t) m->token_expiry;
                        struct tm tm;
                        if (gmtime_r(&t, &tm))
                                (void) strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
                        if (asprintf(&m->last_error,
                                     "%s; the SAS token is valid until %s by this gateway's clock, so the gateway's "
                                     "or the service's clock is off",
                                     res->error_message, when) < 0)
                                m->last_error = NULL;
                }
                if (!m->last_error)
                        m->last_error = strdup(strna(res->error_message));
                manager_set_state(m, MANAGER_REJECTED);
                log_struct(LOG_ERR, STRV(EDGEPROV_MESSAGE_ID(REJECTED), f_reg, f_op, f_att, f_code, f_status),
                           "Registration of '%s' rejected: %s", m->config.registration_id,
                           strna(m->last_error ?: res->error_message));
                if (m->config.fail_fast) {
                        manager_set_status(m, "Rejected: %s", strna(m->last_error ?: res->error_message));
                        m->exit_status = 2;
                        (void) sd_event_exit(m->event, 2);
                        return;
                }
                /* The service said no: ask again only rarely, an operator has to act. */
                manager_set_status(m, "Rejected: %s; next attempt in %d s",
                                   strna(m->last_error ?: res->error_message), m->config.retry_max);
                manager_schedule_retry(m, (uint64_t) m->config.retry_max * USEC_PER_SEC);
                return;
        case DPS_OUTCOME_TRANSIENT:
        case _DPS_OUTCOME_MAX: {
                uint64_t d = backoff_next(&m->backoff);
                if (res->retry_after > 0 && (uint64_t) res->retry_after * USEC_PER_SEC > d)
                        d = (uint64_t) res->retry_after * USEC_PER_SEC;
                free(m->last_error);
                m->last_error = strdup(strna(res->error_message));
                manager_set_state(m, MANAGER_RETRYING);
                char f_delay[48];
                snprintf(f_delay, sizeof(f_delay), "RETRY_USEC=%" PRIu64, d);
                log_struct(LOG_WARNING, STRV(EDGEPROV_MESSAGE_ID(RETRY), f_reg, f_att, f_delay, f_status),
                           "Provisioning attempt %u failed: %s; retrying in %.1f s.", m->attempt,
                           strna(res->error_message), (double) d / USEC_PER_SEC);
                manager_set_status(m, "Attempt %u failed (%s), retrying in %" PRIu64 " s", m->attempt,
                                   strna(res->error_message), (d + USEC_PER_SEC - 1) / USEC_PER_SEC);
                manager_schedule_retry(m, d);
                return;
        }
        }
}

static void on_dps_result(DpsClient *c, const DpsResult *res, void *userdata) {
        Manager *m = userdata;

        if (m->tpm && manager_tpm_on_result(m, c, res))
                return;

        /* res points into the client: free it only afterwards */
        manager_handle_result(m, res);
        if (m->client == c)
                m->client = dps_client_free(m->client);
}

static int manager_provision(Manager *m) {
        _cleanup_free_ char *resource = NULL;
        _cleanup_erase_ char *token = NULL;
        uint64_t expiry;
        int r;

        if (m->client)
                return -EBUSY;
        m->attempt++;
        manager_set_state(m, MANAGER_PROVISIONING);

        if (asprintf(&resource, "%s/registrations/%s", m->config.id_scope, m->config.registration_id) < 0)
                return log_oom();
        expiry = (uint64_t) time(NULL) + (uint64_t) m->config.sas_lifetime;
        m->token_expiry = expiry;
        r = manager_make_password(m, resource, expiry, &token);
        if (r < 0)
                return log_error_errno(r, "Failed to build the SAS token: %m");

        DpsClientParams p = {
                .host = m->config.endpoint,
                .port = conf_port(&m->config),
                .transport = dps_transport_from_string(conf_transport(&m->config)),
                .ca_file = m->config.ca_file,
                .id_scope = m->config.id_scope,
                .registration_id = m->config.registration_id,
                .api_version = m->config.api_version,
                .password = token,
                .payload_json = m->config.payload,
                .tpm_ek_b64 = m->tpm ? tpm_attestation_ek_b64(m->tpm) : NULL,
                .tpm_srk_b64 = m->tpm ? tpm_attestation_srk_b64(m->tpm) : NULL,
                .ssl_ctx = m->x509 ? x509_identity_ssl_ctx(m->x509) : NULL,
                .request_timeout_usec = (uint64_t) m->config.request_timeout * USEC_PER_SEC,
        };
        r = dps_client_new(m->event, &p, on_dps_result, m, &m->client);
        if (r < 0)
                return log_error_errno(r, "Failed to create the DPS client: %m");

        char f_reg[192], f_att[32], f_ep[320];
        log_field(f_reg, sizeof(f_reg), "REGISTRATION_ID", m->config.registration_id);
        snprintf(f_att, sizeof(f_att), "ATTEMPT=%u", m->attempt);
        snprintf(f_ep, sizeof(f_ep), "DPS_ENDPOINT=%s:%d", m->config.endpoint, conf_port(&m->config));
        log_struct(LOG_INFO, STRV(EDGEPROV_MESSAGE_ID(PROVISIONING_STARTED), f_reg, f_att, f_ep),
                   "Provisioning '%s' at %s:%d over %s (scope %s, attempt %u).", m->config.registration_id,
                   m->config.endpoint, conf_port(&m->config), conf_transport(&m->config), m->config.id_scope,
                   m->attempt);
        manager_set_status(m, "Provisioning at %s:%d (attempt %u)", m->config.endpoint, conf_port(&m->config),
                           m->attempt);

        r = dps_client_start(m->client);
        if (r < 0) {
                m->client = dps_client_free(m->client);
                log_error_errno(r, "Failed to start provisioning: %m");
                manager_set_state(m, MANAGER_RETRYING);
                manager_schedule_retry(m, backoff_next(&m->backoff));
                return r;
        }
        return 0;
}

int manager_start(Manager *m) {
        GatewayState s = {};
        int r;

        r = manager_load_key(m);
        if (r < 0)
                return r;
        r = conf_identity_fingerprint(&m->config, m->key_b64, &m->fingerprint);
        if (r < 0)
                return log_error_errno(r, "Failed to compute the identity fingerprint: %m");

        if (!m->start_usec)
                m->start_usec = clock_now_usec(CLOCK_MONOTONIC);
        /* a temporary file of a state write the last run did not finish (SIGKILL, power cut);
         * nothing else writes state.json while the daemon starts */
        if (unlink_stale_temp_files(m->config.state_directory, STATE_FILE_NAME) > 0)
                log_info("Removed a temporary file left in %s by an interrupted write.", m->config.state_directory);
        r = gateway_state_load(m->config.state_directory, &s);
        if (r >= 0 && m->tpm)
                (void) tpm_attestation_set_active_slot(m->tpm, s.tpm_key_slot);
        if (r == -EBADMSG) {
                _cleanup_free_ char *from = NULL, *to = NULL;
                if (asprintf(&from, "%s/%s", m->config.state_directory, STATE_FILE_NAME) >= 0 &&
                    asprintf(&to, "%s/%s.corrupt", m->config.state_directory, STATE_FILE_NAME) >= 0)
                        (void) rename(from, to);
                log_warning("State file '%s/%s' is not readable as a state document; kept as %s.corrupt, "
                            "provisioning again.", m->config.state_directory, STATE_FILE_NAME, STATE_FILE_NAME);
        } else if (r < 0 && r != -ENOENT)
                return log_error_errno(r, "Cannot read state from '%s': %m", m->config.state_directory);

        if (r >= 0 && gateway_state_is_committed(&s)) {
                if (streq_ptr(s.fingerprint, m->fingerprint)) {
                        char f_reg[192], f_hub[320], f_dev[192];
                        m->assignment = s;
                        manager_set_state(m, MANAGER_ASSIGNED);
                        log_field(f_reg, sizeof(f_reg), "REGISTRATION_ID", s.registration_id);
                        log_field(f_hub, sizeof(f_hub), "HUB", s.assigned_hub);
                        log_field(f_dev, sizeof(f_dev), "DEVICE_ID", s.device_id);
                        log_struct(LOG_INFO, STRV(EDGEPROV_MESSAGE_ID(SERVED_FROM_STATE), f_reg, f_hub, f_dev),
                                   "Using the committed assignment: hub '%s', device '%s' (no provisioning needed).",
                                   s.assigned_hub, s.device_id);
                        manager_set_status(m, "Assigned to %s as %s (from state)", s.assigned_hub, s.device_id);
                        return 0;
                }
                char f_reg[192];
                log_field(f_reg, sizeof(f_reg), "REGISTRATION_ID", m->config.registration_id);
                log_struct(LOG_NOTICE, STRV(EDGEPROV_MESSAGE_ID(REPROVISION), f_reg, "REASON=identity-changed"),
                           "The identity configuration changed since the last assignment (hub '%s'); provisioning again.",
                           s.assigned_hub);
                /* keep the old assignment until a new one is committed */
                m->assignment = s;
        } else
                gateway_state_done(&s);

        r = manager_provision(m);
        return r == -EBUSY ? 0 : (r < 0 && m->state == MANAGER_RETRYING ? 0 : r);
}

/* ---- accessors and triggers for the D-Bus layer --------------------------- */

void manager_set_changed_callback(Manager *m, ManagerChangedCallback cb, void *userdata) {
        m->changed_cb = cb;
        m->changed_userdata = userdata;
}

const Config *manager_get_config(const Manager *m) {
        return &m->config;
}

const char *manager_get_last_error(const Manager *m) {
        return m->last_error;
}

uint64_t manager_get_next_retry_usec(const Manager *m) {
        return m->next_retry_realtime_usec;
}

int manager_reprovision(Manager *m, const char *reason) {
        char f_reg[192], f_reason[160];

        if (m->client)
                return -EBUSY;
        log_field(f_reg, sizeof(f_reg), "REGISTRATION_ID", m->config.registration_id);
        log_field(f_reason, sizeof(f_reason), "REASON", isempty(reason) ? "operator-request" : reason);
        log_struct(LOG_NOTICE, STRV(EDGEPROV_MESSAGE_ID(REPROVISION), f_reg, f_reason),
                   "Provisioning again on request (%s).", isempty(reason) ? "operator-request" : reason);
        m->retry_timer = sd_event_source_disable_unref(m->retry_timer);
        backoff_reset(&m->backoff);
        if (m->tpm) {
                m->start_usec = clock_now_usec(CLOCK_MONOTONIC); /* "start to assigned" counts from the request */
                (void) tpm_attestation_take_tpm_usec(m->tpm);
        }
        int r = manager_provision(m);
        return r < 0 && m->state == MANAGER_RETRYING ? 0 : r;
}
