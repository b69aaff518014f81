/*
 * pass.json rules; see common/passjson_check.h.
 *
 * The check walks only the keys it knows, so every JSON pointer it reports is built from names in
 * the tables below and array indexes: no pointer ever carries the issuer's own text. URLs are read by
 * libcurl's URL API, JSON by jansson; dates and colours have grammars of a few characters and are
 * read here.
 */
#include "common/passjson_check.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const char *const style_keys[] = {"boardingPass", "coupon", "eventTicket", "generic", "storeCard"};
static const char *const field_lists[] = {"headerFields",    "primaryFields", "secondaryFields",
                                          "auxiliaryFields", "backFields",    "additionalInfoFields"};
static const char *const transit_types[] = {"PKTransitTypeAir", "PKTransitTypeBoat", "PKTransitTypeBus",
                                            "PKTransitTypeGeneric", "PKTransitTypeTrain"};
static const char *const barcode_formats[] = {"PKBarcodeFormatQR", "PKBarcodeFormatPDF417",
                                              "PKBarcodeFormatAztec", "PKBarcodeFormatCode128"};
static const char *const color_keys[] = {"foregroundColor", "backgroundColor", "labelColor",
                                         "footerBackgroundColor"};
static const char *const date_keys[] = {"relevantDate", "expirationDate"};
static const char *const relevant_date_keys[] = {"date", "relevantDate", "startDate", "endDate"};
/* appLaunchURL and webServiceURL; the event guide links of iOS 18 event tickets; the links of iOS 26
 * boarding passes (as in the United Airlines pass of the fixtures). */
static const char *const url_keys[] = {
    "webServiceURL",
    "appLaunchURL",
    "bagPolicyURL",
    "orderFoodURL",
    "parkingInformationURL",
    "directionsInformationURL",
    "purchaseParkingURL",
    "merchandiseURL",
    "transitInformationURL",
    "accessibilityURL",
    "addOnURL",
    "contactVenueWebsite",
    "transferURL",
    "sellURL",
    "changeSeatURL",
    "entertainmentURL",
    "purchaseAdditionalBaggageURL",
    "purchaseLoungeAccessURL",
    "purchaseWifiURL",
    "upgradeURL",
    "managementURL",
    "registerServiceAnimalURL",
    "reportLostBagURL",
    "requestWheelchairURL",
    "transitProviderWebsiteURL",
};

#define MSG_REQUIRED "is required"
#define MSG_STRING   "must be a string"
#define MSG_OBJECT   "must be an object"
#define MSG_ARRAY    "must be an array"
#define MSG_DATE     "must be a date with a time zone, like 2026-12-03T19:00:00+01:00 or 2026-12-03T18:00Z"
#define MSG_COLOR    "must be a colour like rgb(60, 65, 76), each part from 0 to 255 (or rgba(60, 65, 76, 0.75))"
#define MSG_URL      "must be an absolute URL, like https://example.com/path"

/* The text of a JSON string without NUL bytes (which would hide what follows them), else NULL. */
static const char *text_of(const json_t *v)
{
    const char *s = json_string_value(v);
    return s != NULL && strlen(s) == json_string_length(v) ? s : NULL;
}

static int is_one_of(const json_t *v, const char *const *list, size_t n)
{
    const char *s = text_of(v);
    if (s == NULL)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0)
            return 1;
    return 0;
}

/* Reports obj[key] missing (when required) or not a string. */
static void check_string(const json_t *obj, const char *base, const char *key, int required, cm_problems_t *p)
{
    char ptr[CM_POINTER_MAX];
    const json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        if (required)
            cm_problems_add_pointer(p, cm_pointer_join(ptr, sizeof(ptr), base, key), MSG_REQUIRED);
    } else if (!json_is_string(v)) {
        cm_problems_add_pointer(p, cm_pointer_join(ptr, sizeof(ptr), base, key), MSG_STRING);
    }
}

static void check_date(const json_t *obj, const char *base, const char *key, cm_problems_t *p)
{
    char ptr[CM_POINTER_MAX];
    const json_t *v = json_object_get(obj, key);
    if (v != NULL && (text_of(v) == NULL || !cm_passjson_is_date(text_of(v))))
        cm_problems_add_pointer(p, cm_pointer_join(ptr, sizeof(ptr), base, key), MSG_DATE);
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

static int days_in_month(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

int cm_passjson_is_date(const char *s)
{
    int y, mo, d, h, mi, sec = 0, tzh, tzm;
    /* Each test reads a character only after the ones before it matched, so none reads past the NUL. */
    if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' || !digits(s + 8, 2, &d) ||
        s[10] != 'T' || !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi))
        return 0;
    const char *p = s + 16;
    if (*p == ':') {
        if (!digits(p + 1, 2, &sec))
            return 0;
        p += 3;
        if (*p == '.') {
            p++;
            if (*p < '0' || *p > '9')
                return 0;
            while (*p >= '0' && *p <= '9')
                p++;
        }
    }
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60)
        return 0;
    if (*p == 'Z')
        return p[1] == '\0';
    if (*p != '+' && *p != '-')
        return 0;
    return digits(p + 1, 2, &tzh) && p[3] == ':' && digits(p + 4, 2, &tzm) && p[6] == '\0' && tzh <= 23 &&
           tzm <= 59;
}

/* Reads an alpha value 0..1 ("1", "0.75", ".5") at *p. */
static int alpha(const char **p)
{
    const char *c = *p;
    int whole = 0, n = 0, nonzero_fraction = 0;
    while (*c >= '0' && *c <= '9' && n < 4) {
        whole = whole * 10 + (*c++ - '0');
        n++;
    }
    if (*c == '.') {
        c++;
        int f = 0;
        while (*c >= '0' && *c <= '9') {
            nonzero_fraction |= *c++ != '0';
            f++;
        }
        if (f == 0)
            return 0;
    } else if (n == 0) {
        return 0;
    }
    *p = c;
    return whole < 1 || (whole == 1 && !nonzero_fraction);
}

int cm_passjson_is_color(const char *s)
{
    int parts = 3;
    const char *p = s + 4;
    if (strncmp(s, "rgba(", 5) == 0) {
        parts = 4;
        p = s + 5;
    } else if (strncmp(s, "rgb(", 4) != 0) {
        return 0;
    }
    for (int i = 0; i < parts; i++) {
        while (*p == ' ')
            p++;
        if (i == 3) {
            if (!alpha(&p))
                return 0;
        } else {
            int v = 0, n = 0;
            while (*p >= '0' && *p <= '9' && n < 4) {
                v = v * 10 + (*p++ - '0');
                n++;
            }
            if (n == 0 || n > 3 || v > 255)
                return 0;
        }
        while (*p == ' ')
            p++;
        if (*p++ != (i < parts - 1 ? ',' : ')'))
            return 0;
    }
    return *p == '\0';
}

static int is_absolute_url(const char *s)
{
    CURLU *u = curl_url();
    if (u == NULL)
        abort();
    /* Without CURLU_DEFAULT_SCHEME a URL without a scheme is refused; NON_SUPPORT_SCHEME lets an app's
     * own scheme through (appLaunchURL "myapp://..."). */
    CURLUcode rc = curl_url_set(u, CURLUPART_URL, s, CURLU_NON_SUPPORT_SCHEME);
    curl_url_cleanup(u);
    return rc == CURLUE_OK;
}

/* A field's value is a date when the field says how to show one. */
static void check_field(const json_t *f, const char *ptr, json_t *seen, cm_problems_t *p)
{
    char kptr[CM_POINTER_MAX], vptr[CM_POINTER_MAX];
    if (!json_is_object(f)) {
        cm_problems_add_pointer(p, ptr, MSG_OBJECT);
        return;
    }
    cm_pointer_join(kptr, sizeof(kptr), ptr, "key");
    cm_pointer_join(vptr, sizeof(vptr), ptr, "value");
    const json_t *key = json_object_get(f, "key"), *value = json_object_get(f, "value");
    if (key == NULL) {
        cm_problems_add_pointer(p, kptr, MSG_REQUIRED);
    } else if (!json_is_string(key)) {
        cm_problems_add_pointer(p, kptr, MSG_STRING);
    } else {
        const char *k = json_string_value(key);
        size_t klen = json_string_length(key);
        const json_t *first = json_object_getn(seen, k, klen);
        if (first != NULL)
            cm_problems_add_pointer(p, kptr,
                                    "repeats the field key \"%.100s\" of %s: field keys are unique in a pass",
                                    k, json_string_value(first));
        else
            json_object_setn_new(seen, k, klen, json_string(kptr));
    }
    if (value == NULL) {
        cm_problems_add_pointer(p, vptr, MSG_REQUIRED);
    } else if (!json_is_string(value) && !json_is_number(value)) {
        cm_problems_add_pointer(p, vptr, "must be a string or a number");
    } else if ((json_object_get(f, "dateStyle") != NULL || json_object_get(f, "timeStyle") != NULL) &&
               (text_of(value) == NULL || !cm_passjson_is_date(text_of(value)))) {
        cm_problems_add_pointer(p, vptr, MSG_DATE " (the field has a dateStyle or timeStyle)");
    }
}

static void check_style(const json_t *style, const char *style_key, json_t *seen, cm_problems_t *p)
{
    char base[CM_POINTER_MAX], lptr[CM_POINTER_MAX], fptr[CM_POINTER_MAX];
    cm_pointer_join(base, sizeof(base), "", style_key);
    if (!json_is_object(style)) {
        cm_problems_add_pointer(p, base, MSG_OBJECT);
        return;
    }
    if (strcmp(style_key, "boardingPass") == 0) {
        const json_t *t = json_object_get(style, "transitType");
        cm_pointer_join(lptr, sizeof(lptr), base, "transitType");
        if (t == NULL)
            cm_problems_add_pointer(p, lptr, "is required in a boarding pass");
        else if (!is_one_of(t, transit_types, COUNT(transit_types)))
            cm_problems_add_pointer(p, lptr,
                                    "must be one of PKTransitTypeAir, PKTransitTypeBoat, PKTransitTypeBus, "
                                    "PKTransitTypeGeneric, PKTransitTypeTrain");
    }
    for (size_t i = 0; i < COUNT(field_lists); i++) {
        const json_t *list = json_object_get(style, field_lists[i]);
        if (list == NULL)
            continue;
        cm_pointer_join(lptr, sizeof(lptr), base, field_lists[i]);
        if (!json_is_array(list)) {
            cm_problems_add_pointer(p, lptr, MSG_ARRAY);
            continue;
        }
        for (size_t j = 0; j < json_array_size(list); j++)
            check_field(json_array_get(list, j), cm_pointer_index(fptr, sizeof(fptr), lptr, j), seen, p);
    }
}

static void check_barcode(const json_t *b, const char *ptr, cm_problems_t *p)
{
    char fptr[CM_POINTER_MAX];
    if (!json_is_object(b)) {
        cm_problems_add_pointer(p, ptr, MSG_OBJECT);
        return;
    }
    check_string(b, ptr, "message", 1, p);
    const json_t *format = json_object_get(b, "format");
    cm_pointer_join(fptr, sizeof(fptr), ptr, "format");
    if (format == NULL)
        cm_problems_add_pointer(p, fptr, MSG_REQUIRED);
    else if (!is_one_of(format, barcode_formats, COUNT(barcode_formats)))
        cm_problems_add_pointer(p, fptr,
                                "must be one of PKBarcodeFormatQR, PKBarcodeFormatPDF417, "
                                "PKBarcodeFormatAztec, PKBarcodeFormatCode128");
    check_string(b, ptr, "messageEncoding", 1, p);
}

/* The array at pass[key], or NULL (after reporting it when it is there but not an array). */
static const json_t *array_or_report(const json_t *pass, const char *key, cm_problems_t *p)
{
    char ptr[CM_POINTER_MAX];
    const json_t *v = json_object_get(pass, key);
    if (v != NULL && !json_is_array(v)) {
        cm_problems_add_pointer(p, cm_pointer_join(ptr, sizeof(ptr), "", key), MSG_ARRAY);
        return NULL;
    }
    return v;
}

static void check_number(const json_t *obj, const char *base, const char *key, double min, double max,
                         cm_problems_t *p)
{
    char ptr[CM_POINTER_MAX];
    const json_t *v = json_object_get(obj, key);
    cm_pointer_join(ptr, sizeof(ptr), base, key);
    if (v == NULL)
        cm_problems_add_pointer(p, ptr, MSG_REQUIRED);
    else if (!json_is_number(v) || json_number_value(v) < min || json_number_value(v) > max)
        cm_problems_add_pointer(p, ptr, "must be a number from %g to %g", min, max);
}

static void check_relevance(const json_t *pass, cm_problems_t *p)
{
    char ptr[CM_POINTER_MAX];
    const json_t *list = array_or_report(pass, "relevantDates", p);
    for (size_t i = 0; i < json_array_size(list); i++) {
        const json_t *e = json_array_get(list, i);
        cm_pointer_index(ptr, sizeof(ptr), "/relevantDates", i);
        if (!json_is_object(e)) {
            cm_problems_add_pointer(p, ptr, MSG_OBJECT);
            continue;
        }
        for (size_t k = 0; k < COUNT(relevant_date_keys); k++)
            check_date(e, ptr, relevant_date_keys[k], p);
        if (json_object_get(e, "date") == NULL && json_object_get(e, "relevantDate") == NULL &&
            (json_object_get(e, "startDate") == NULL || json_object_get(e, "endDate") == NULL))
            cm_problems_add_pointer(p, ptr, "needs a date, or a startDate and an endDate");
    }
    list = array_or_report(pass, "locations", p);
    if (json_array_size(list) > CM_PASS_MAX_LOCATIONS)
        cm_problems_add_pointer(p, "/locations", "has %zu entries: a pass has at most %d",
                                json_array_size(list), CM_PASS_MAX_LOCATIONS);
    for (size_t i = 0; i < json_array_size(list); i++) {
        const json_t *e = json_array_get(list, i);
        cm_pointer_index(ptr, sizeof(ptr), "/locations", i);
        if (!json_is_object(e)) {
            cm_problems_add_pointer(p, ptr, MSG_OBJECT);
            continue;
        }
        check_number(e, ptr, "latitude", -90, 90, p);
        check_number(e, ptr, "longitude", -180, 180, p);
    }
    list = array_or_report(pass, "beacons", p);
    if (json_array_size(list) > CM_PASS_MAX_BEACONS)
        cm_problems_add_pointer(p, "/beacons", "has %zu entries: a pass has at most %d",
                                json_array_size(list), CM_PASS_MAX_BEACONS);
    for (size_t i = 0; i < json_array_size(list); i++) {
        const json_t *e = json_array_get(list, i);
        cm_pointer_index(ptr, sizeof(ptr), "/beacons", i);
        if (!json_is_object(e))
            cm_problems_add_pointer(p, ptr, MSG_OBJECT);
        else
            check_string(e, ptr, "proximityUUID", 1, p);
    }
}

void cm_passjson_check(const json_t *pass, cm_problems_t *p)
{
    char ptr[CM_POINTER_MAX];
    if (!json_is_object(pass)) {
        cm_problems_add_pointer(p, "", "must be a JSON object");
        return;
    }
    /* required keys */
    const json_t *fv = json_object_get(pass, "formatVersion");
    if (fv == NULL)
        cm_problems_add_pointer(p, "/formatVersion", MSG_REQUIRED);
    else if (!json_is_number(fv) || json_number_value(fv) != 1)
        cm_problems_add_pointer(p, "/formatVersion", "must be the number 1");
    check_string(pass, "", "organizationName", 1, p);
    check_string(pass, "", "description", 1, p);

    /* exactly one style, and its fields */
    char present[128] = "";
    size_t styles = 0;
    json_t *seen = json_object();
    if (seen == NULL)
        abort();
    for (size_t i = 0; i < COUNT(style_keys); i++) {
        const json_t *style = json_object_get(pass, style_keys[i]);
        if (style == NULL)
            continue;
        snprintf(present + strlen(present), sizeof(present) - strlen(present), "%s%s", styles > 0 ? ", " : "",
                 style_keys[i]);
        styles++;
        check_style(style, style_keys[i], seen, p);
    }
    json_decref(seen);
    if (styles == 0)
        cm_problems_add_pointer(
            p, "", "needs one style key: boardingPass, coupon, eventTicket, generic or storeCard");
    else if (styles > 1)
        cm_problems_add_pointer(p, "", "has %zu style keys (%s): a pass has exactly one", styles, present);

    /* barcodes */
    const json_t *barcode = json_object_get(pass, "barcode");
    if (barcode != NULL)
        check_barcode(barcode, "/barcode", p);
    const json_t *barcodes = array_or_report(pass, "barcodes", p);
    for (size_t i = 0; i < json_array_size(barcodes); i++)
        check_barcode(json_array_get(barcodes, i), cm_pointer_index(ptr, sizeof(ptr), "/barcodes", i), p);

    /* dates, relevance */
    for (size_t i = 0; i < COUNT(date_keys); i++)
        check_date(pass, "", date_keys[i], p);
    check_relevance(pass, p);

    /* colours */
    for (size_t i = 0; i < COUNT(color_keys); i++) {
        const json_t *c = json_object_get(pass, color_keys[i]);
        if (c != NULL && (text_of(c) == NULL || !cm_passjson_is_color(text_of(c))))
            cm_problems_add_pointer(p, cm_pointer_join(ptr, sizeof(ptr), "", color_keys[i]), MSG_COLOR);
    }

    /* URLs */
    for (size_t i = 0; i < COUNT(url_keys); i++) {
        const json_t *u = json_object_get(pass, url_keys[i]);
        if (u == NULL)
            continue;
        cm_pointer_join(ptr, sizeof(ptr), "", url_keys[i]);
        if (!json_is_string(u))
            cm_problems_add_pointer(p, ptr, MSG_STRING);
        else if (text_of(u) == NULL || !is_absolute_url(text_of(u)))
            cm_problems_add_pointer(p, ptr, MSG_URL);
    }
}
