/*
 * The rules a pass.json must follow for Wallet to accept the pass (Apple's PassKit package format,
 * "Why Wallet rejects a pass"), checked before anything is stored so that no phone ever sees a pass
 * it would refuse. Pure functions: no I/O, thread-safe.
 *
 * The keys the server writes into every signed pass (passTypeIdentifier, serialNumber,
 * teamIdentifier, webServiceURL, authenticationToken) are not required; a webServiceURL the issuer
 * gives is still checked, as every URL key is.
 */
#ifndef COMMON_PASSJSON_CHECK_H
#define COMMON_PASSJSON_CHECK_H

#include "common/problems.h"

struct json_t;

/* At most this many locations and beacons (Wallet ignores a pass's relevance beyond them). */
#define CM_PASS_MAX_LOCATIONS 10
#define CM_PASS_MAX_BEACONS   10

/* Checks pass (the pass.json as it will be signed) and appends one problem per broken rule, each
 * with the JSON pointer of the offending value:
 *   - formatVersion (the number 1), organizationName and description (strings) are required;
 *   - exactly one style key (boardingPass, coupon, eventTicket, generic, storeCard), an object; a
 *     boardingPass has a transitType (PKTransitTypeAir, Boat, Bus, Generic, Train);
 *   - field lists (headerFields, primaryFields, secondaryFields, auxiliaryFields, backFields,
 *     additionalInfoFields) are arrays of objects with a string "key" and a string or number
 *     "value"; keys are unique in the whole pass; a field with dateStyle or timeStyle has a date value;
 *   - barcode and each barcodes entry: message a string, format one of PKBarcodeFormatQR, PDF417,
 *     Aztec, Code128, messageEncoding a string;
 *   - relevantDate, expirationDate and the dates of relevantDates entries are W3C dates with a time
 *     zone (cm_passjson_is_date);
 *   - colours (foregroundColor, backgroundColor, labelColor, footerBackgroundColor) are
 *     rgb(r, g, b) with each part 0..255 (cm_passjson_is_color);
 *   - at most CM_PASS_MAX_LOCATIONS locations (numeric latitude and longitude) and
 *     CM_PASS_MAX_BEACONS beacons (a string proximityUUID);
 *   - URL keys (webServiceURL, appLaunchURL, and the iOS 18 and 26 links such as bagPolicyURL or
 *     changeSeatURL) are absolute URLs, as libcurl's URL parser reads them.
 * The borrowed pass is only read. */
void cm_passjson_check(const struct json_t *pass, cm_problems_t *problems);

/* 1 when s is a W3C / ISO 8601 date and time with a time zone: YYYY-MM-DDTHH:MM[:SS[.fraction]]
 * followed by Z or +HH:MM / -HH:MM, every part in range ("2013-04-24T10:00-05:00",
 * "2026-12-03T19:00:00Z"). */
int cm_passjson_is_date(const char *s);

/* 1 when s is a CSS rgb(r, g, b) colour with integer parts 0..255 (spaces allowed around them), or
 * rgba(r, g, b, a) with a from 0 to 1: Apple documents rgb() only, but Wallet takes rgba() (United
 * Airlines' boarding passes use it for labelColor). */
int cm_passjson_is_color(const char *s);

#endif
