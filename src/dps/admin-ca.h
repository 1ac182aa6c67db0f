/* SPDX-License-Identifier: MIT */
#pragma once

#include <json-c/json.h>

#include "dps/admin.h"
#include "dps/service.h"

/* Admin API commands for CA certificates (issue 6, dps-protocol.md §5.4): the table
 * dps_admin_ca_commands (declared in admin.h, listed in admin.c's command_tables):
 *
 *   listCaCertificates                                  → {"certificates":[info...]}
 *   getCaCertificate {name}                             → {"certificate":info}
 *   addCaCertificate {name, certificate: PEM | base64 DER, ["verified": true]}
 *                                                       → {"certificate":info}
 *   generateVerificationCode {name}                     → {"verificationCode", "expiry", ...info}
 *   verifyCaCertificate {name, certificate: PEM | base64 DER}
 *                                                       → {"certificate":info}  (isVerified true)
 *   deleteCaCertificate {name}                          → {}
 *
 * info: {name, status: "Unverified"|"Verified", isVerified, subject, thumbprint (SHA-1),
 *        sha256Thumbprint, notBefore, expiry, created, updated, certificate (PEM)}.
 * Errors: "Not found", "Invalid/missing name", "Invalid/missing certificate (PEM or base64 DER)",
 * the store's reason for add, "Verification failed: <reason>". */
