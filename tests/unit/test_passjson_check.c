/* pass.json rules (common/passjson_check.h) and problem lists (common/problems.h): every rule with the
 * exact pointer and message it reports, and the passes that must go through. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/passjson_check.h"
#include "problems_text.h"

/* A valid event ticket, the base every case changes. */
static const char *const VALID =
    "{\"formatVersion\": 1, \"organizationName\": \"Venue\", \"description\": \"Ticket\","
    " \"eventTicket\": {\"primaryFields\": [{\"key\": \"event\", \"label\": \"EVENT\", \"value\": "
    "\"Night\"}]},"
    " \"barcodes\": [{\"message\": \"1234\", \"format\": \"PKBarcodeFormatQR\", \"messageEncoding\": "
    "\"iso-8859-1\"}]}";

/* The problems of VALID merged with patch (top-level keys replaced; null removes), one "where: message"
 * line each. The caller frees. */
static char *problems_of(const char *patch)
{
    json_t *pass = json_loads(VALID, 0, NULL), *p = json_loads(patch, 0, NULL);
    assert_non_null(pass);
    assert_non_null(p);
    const char *k;
    json_t *v;
    json_object_foreach(p, k, v)
    {
        if (json_is_null(v))
            json_object_del(pass, k);
        else
            json_object_set(pass, k, v);
    }
    cm_problems_t *problems = cm_problems_new();
    cm_passjson_check(pass, problems);
    char *out = problems_text(problems, "pointer");
    cm_problems_free(problems);
    json_decref(pass);
    json_decref(p);
    return out;
}

static void expect(const char *patch, const char *want)
{
    char *got = problems_of(patch);
    assert_string_equal(got, want);
    free(got);
}

#define DATE_MSG  "must be a date with a time zone, like 2026-12-03T19:00:00+01:00 or 2026-12-03T18:00Z"
#define COLOR_MSG "must be a colour like rgb(60, 65, 76), each part from 0 to 255 (or rgba(60, 65, 76, 0.75))"
#define URL_MSG   "must be an absolute URL, like https://example.com/path"

static void valid_pass_has_no_problem(void **state)
{
    expect("{}", "");
    /* what the server sets is not required, and Apple's own date style without seconds is fine */
    expect("{\"relevantDate\": \"2013-04-24T10:00-05:00\", \"expirationDate\": \"2026-12-03T19:00:00.250Z\","
           " \"webServiceURL\": \"https://example.com/passes/\", \"appLaunchURL\": \"myapp://open/1\","
           " \"foregroundColor\": \"rgb(255,255,255)\", \"backgroundColor\": \"rgb( 0 , 10 , 200 )\","
           " \"labelColor\": \"rgb(60, 65, 76)\", \"formatVersion\": 1.0}",
           "");
}

static void not_an_object(void **state)
{
    cm_problems_t *p = cm_problems_new();
    json_t *a = json_array();
    cm_passjson_check(a, p);
    assert_int_equal(cm_problems_count(p), 1);
    json_t *e = json_array_get(cm_problems_get(p), 0);
    assert_string_equal(json_string_value(json_object_get(e, "pointer")), "");
    assert_string_equal(json_string_value(json_object_get(e, "message")), "must be a JSON object");
    json_decref(a);
    cm_problems_free(p);
}

static void required_keys(void **state)
{
    expect("{\"formatVersion\": null, \"organizationName\": null, \"description\": null}",
           "/formatVersion: is required\n/organizationName: is required\n/description: is required\n");
    expect(
        "{\"formatVersion\": 2, \"organizationName\": 7, \"description\": [\"x\"]}",
        "/formatVersion: must be the number 1\n/organizationName: must be a string\n/description: must be a "
        "string\n");
    expect("{\"formatVersion\": \"1\"}", "/formatVersion: must be the number 1\n");
}

static void exactly_one_style(void **state)
{
    expect("{\"eventTicket\": null}",
           ": needs one style key: boardingPass, coupon, eventTicket, generic or storeCard\n");
    expect("{\"coupon\": {}, \"generic\": {}}",
           ": has 3 style keys (coupon, eventTicket, generic): a pass has exactly one\n");
    expect("{\"eventTicket\": []}", "/eventTicket: must be an object\n");
}

static void boarding_pass_transit_type(void **state)
{
    expect("{\"eventTicket\": null, \"boardingPass\": {}}",
           "/boardingPass/transitType: is required in a boarding pass\n");
    expect("{\"eventTicket\": null, \"boardingPass\": {\"transitType\": \"PKTransitTypePlane\"}}",
           "/boardingPass/transitType: must be one of PKTransitTypeAir, PKTransitTypeBoat, PKTransitTypeBus, "
           "PKTransitTypeGeneric, PKTransitTypeTrain\n");
    expect("{\"eventTicket\": null, \"boardingPass\": {\"transitType\": \"PKTransitTypeTrain\"}}", "");
}

static void fields(void **state)
{
    expect(
        "{\"eventTicket\": {\"headerFields\": {}, \"primaryFields\": [1, {}, {\"key\": 5, \"value\": true}],"
        " \"secondaryFields\": [{\"key\": \"a\", \"value\": 1.5}], \"auxiliaryFields\": [{\"key\": \"b\", "
        "\"value\": null}], \"backFields\": [{\"key\": \"c\", \"value\": \"x\"}], \"additionalInfoFields\": "
        "[{\"key\": \"d\", \"value\": {}}]}}",
        "/eventTicket/headerFields: must be an array\n"
        "/eventTicket/primaryFields/0: must be an object\n"
        "/eventTicket/primaryFields/1/key: is required\n"
        "/eventTicket/primaryFields/1/value: is required\n"
        "/eventTicket/primaryFields/2/key: must be a string\n"
        "/eventTicket/primaryFields/2/value: must be a string or a number\n"
        "/eventTicket/auxiliaryFields/0/value: must be a string or a number\n"
        "/eventTicket/additionalInfoFields/0/value: must be a string or a number\n");
}

static void field_keys_unique_in_the_pass(void **state)
{
    expect(
        "{\"eventTicket\": {\"headerFields\": [{\"key\": \"gate\", \"value\": \"1\"}], \"primaryFields\": "
        "[{\"key\": \"seat\", \"value\": \"2\"}, {\"key\": \"gate\", \"value\": \"3\"}], \"backFields\": "
        "[{\"key\": \"seat\", \"value\": \"4\"}]}}",
        "/eventTicket/primaryFields/1/key: repeats the field key \"gate\" of "
        "/eventTicket/headerFields/0/key: "
        "field keys are unique in a pass\n"
        "/eventTicket/backFields/0/key: repeats the field key \"seat\" of /eventTicket/primaryFields/0/key: "
        "field keys are unique in a pass\n");
}

static void date_fields(void **state)
{
    expect("{\"eventTicket\": {\"primaryFields\": [{\"key\": \"a\", \"value\": \"tomorrow\", \"dateStyle\": "
           "\"PKDateStyleShort\"}, {\"key\": \"b\", \"value\": 12, \"timeStyle\": \"PKDateStyleShort\"},"
           " {\"key\": \"c\", \"value\": \"2013-04-24T10:00-05:00\", \"dateStyle\": \"PKDateStyleFull\", "
           "\"timeStyle\": \"PKDateStyleFull\"}, {\"key\": \"d\", \"value\": \"2013-04-24T10:00\", "
           "\"dateStyle\": \"PKDateStyleShort\"}]}}",
           "/eventTicket/primaryFields/0/value: " DATE_MSG " (the field has a dateStyle or timeStyle)\n"
           "/eventTicket/primaryFields/1/value: " DATE_MSG " (the field has a dateStyle or timeStyle)\n"
           "/eventTicket/primaryFields/3/value: " DATE_MSG " (the field has a dateStyle or timeStyle)\n");
}

static void barcodes(void **state)
{
    expect("{\"barcodes\": [{\"message\": 1234, \"format\": \"PKBarcodeFormatQR\", \"messageEncoding\": "
           "\"iso-8859-1\"}]}",
           "/barcodes/0/message: must be a string\n");
    expect(
        "{\"barcodes\": [{}, 3, {\"message\": \"x\", \"format\": \"QR\", \"messageEncoding\": 1}],"
        " \"barcode\": {\"message\": \"x\", \"format\": \"PKBarcodeFormatCode128\"}}",
        "/barcode/messageEncoding: is required\n"
        "/barcodes/0/message: is required\n"
        "/barcodes/0/format: is required\n"
        "/barcodes/0/messageEncoding: is required\n"
        "/barcodes/1: must be an object\n"
        "/barcodes/2/format: must be one of PKBarcodeFormatQR, PKBarcodeFormatPDF417, PKBarcodeFormatAztec, "
        "PKBarcodeFormatCode128\n"
        "/barcodes/2/messageEncoding: must be a string\n");
    expect("{\"barcodes\": {\"message\": \"x\"}, \"barcode\": []}",
           "/barcode: must be an object\n/barcodes: must be an array\n");
    expect("{\"barcode\": {\"message\": \"1\", \"format\": \"PKBarcodeFormatPDF417\", \"messageEncoding\": "
           "\"utf-8\"}, \"barcodes\": [{\"message\": \"1\", \"format\": \"PKBarcodeFormatAztec\", "
           "\"messageEncoding\": \"utf-8\"}, {\"message\": \"1\", \"format\": \"PKBarcodeFormatCode128\", "
           "\"messageEncoding\": \"utf-8\"}]}",
           "");
}

static void dates(void **state)
{
    expect("{\"relevantDate\": \"2026-12-03 19:00\", \"expirationDate\": 1700000000}",
           "/relevantDate: " DATE_MSG "\n/expirationDate: " DATE_MSG "\n");
    expect("{\"relevantDates\": [{\"date\": \"2026-12-03T19:00:00+01:00\"}, {\"startDate\": "
           "\"2026-12-03T19:00Z\", \"endDate\": \"2026-12-03T23:00Z\"}, {\"relevantDate\": "
           "\"2026-12-03T19:00Z\"}]}",
           "");
    expect("{\"relevantDates\": [{\"date\": \"2026-12-03\"}, {\"startDate\": \"2026-12-03T19:00Z\"}, 4, {}]}",
           "/relevantDates/0/date: " DATE_MSG "\n"
           "/relevantDates/1: needs a date, or a startDate and an endDate\n"
           "/relevantDates/2: must be an object\n"
           "/relevantDates/3: needs a date, or a startDate and an endDate\n");
    expect("{\"relevantDates\": {}}", "/relevantDates: must be an array\n");
}

static void date_grammar(void **state)
{
    const char *good[] = {"2026-12-03T19:00:00+01:00", "2026-12-03T19:00Z", "2013-04-24T10:00-05:00",
                          "2024-02-29T23:59:60.123456Z", "2026-12-03T00:00:00-00:00"};
    const char *bad[] = {"",
                         "2026-12-03",
                         "2026-12-03T19:00",
                         "2026-12-03T19:00:00",
                         "2026-12-03T19:00:00+0100",
                         "2026-12-03T19:00:00+01",
                         "2026-13-03T19:00Z",
                         "2025-02-29T19:00Z",
                         "2026-12-32T19:00Z",
                         "2026-12-03T24:00Z",
                         "2026-12-03T19:60Z",
                         "2026-12-03T19:00:00.Z",
                         "2026-12-03t19:00Z",
                         "2026-12-03T19:00Zx",
                         "2026-12-03T19:00+24:00",
                         "26-12-03T19:00Z"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(cm_passjson_is_date(good[i]));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(cm_passjson_is_date(bad[i]));
}

static void colors(void **state)
{
    expect("{\"foregroundColor\": \"#ffffff\", \"backgroundColor\": \"rgb(256, 0, 0)\", \"labelColor\": 3,"
           " \"footerBackgroundColor\": \"rgb(1, 2)\"}",
           "/foregroundColor: " COLOR_MSG "\n/backgroundColor: " COLOR_MSG "\n/labelColor: " COLOR_MSG
           "\n/footerBackgroundColor: " COLOR_MSG "\n");
    const char *bad[] = {
        "rgb(1,2,3,4)",        "rgb(-1, 2, 3)",       "rgb(1, 2, 3) ",         "RGB(1, 2, 3)",
        "rgb(0001, 2, 3)",     "rgb(1.5, 2, 3)",      "rgba(1, 2, 3)",         "rgb(,2,3)",
        "rgba(1, 2, 3, 1.5)",  "rgba(1, 2, 3, 2)",    "rgba(1, 2, 3, .)",      "rgba(1, 2, 3, 0.5",
        "rgba(1, 2, 3, 1.01)", "rgba(1, 2, 3, -0.5)", "rgba(1, 2, 3, 0.5, 1)", "rgb(1, 2, 3"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(cm_passjson_is_color(bad[i]));
    assert_true(cm_passjson_is_color("rgb(0, 0, 0)"));
    assert_true(cm_passjson_is_color("rgb(255,255,255)"));
    assert_true(cm_passjson_is_color("rgba(255, 255, 255, 0.75)"));
    assert_true(cm_passjson_is_color("rgba(0,0,0,1)"));
    assert_true(cm_passjson_is_color("rgba(0, 0, 0, 1.00)"));
    assert_true(cm_passjson_is_color("rgba(0, 0, 0, .5)"));
    assert_true(cm_passjson_is_color("rgba(0, 0, 0, 0)"));
}

static void locations_and_beacons(void **state)
{
    char patch[4096];
    strcpy(patch, "{\"locations\": [");
    for (int i = 0; i < 11; i++)
        strcat(patch, i ? ", {\"latitude\": 1, \"longitude\": 2}" : "{\"latitude\": 1, \"longitude\": 2}");
    strcat(patch, "], \"beacons\": [");
    for (int i = 0; i < 11; i++)
        strcat(patch, i ? ", {\"proximityUUID\": \"u\"}" : "{\"proximityUUID\": \"u\"}");
    strcat(patch, "]}");
    expect(patch,
           "/locations: has 11 entries: a pass has at most 10\n/beacons: has 11 entries: a pass has at "
           "most 10\n");
    expect(
        "{\"locations\": [{\"latitude\": \"37.6\", \"longitude\": -122.3}, {\"latitude\": 91, \"longitude\": "
        "-181}, {}, 5], \"beacons\": [{}, {\"proximityUUID\": 1}, []]}",
        "/locations/0/latitude: must be a number from -90 to 90\n"
        "/locations/1/latitude: must be a number from -90 to 90\n"
        "/locations/1/longitude: must be a number from -180 to 180\n"
        "/locations/2/latitude: is required\n"
        "/locations/2/longitude: is required\n"
        "/locations/3: must be an object\n"
        "/beacons/0/proximityUUID: is required\n"
        "/beacons/1/proximityUUID: must be a string\n"
        "/beacons/2: must be an object\n");
    expect("{\"locations\": {}, \"beacons\": \"x\"}",
           "/locations: must be an array\n/beacons: must be an array\n");
}

static void urls(void **state)
{
    expect("{\"webServiceURL\": \"example.com/passes\", \"appLaunchURL\": 5, \"bagPolicyURL\": \"https://\","
           " \"orderFoodURL\": \"https://ex ample.com\", \"changeSeatURL\": \"/relative\","
           " \"transitProviderWebsiteURL\": \"https://example.com:99999/\", \"sellURL\": "
           "\"https://example.com/s\"}",
           "/webServiceURL: " URL_MSG "\n/appLaunchURL: must be a string\n/bagPolicyURL: " URL_MSG
           "\n/orderFoodURL: " URL_MSG "\n/changeSeatURL: " URL_MSG "\n/transitProviderWebsiteURL: " URL_MSG
           "\n");
    /* every URL key, iOS 18 event guide and iOS 26 boarding pass links included */
    const char *keys[] = {"webServiceURL",
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
                          "transitProviderWebsiteURL"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        char patch[256], want[256];
        snprintf(patch, sizeof(patch), "{\"%s\": \"no scheme\"}", keys[i]);
        snprintf(want, sizeof(want), "/%s: " URL_MSG "\n", keys[i]);
        expect(patch, want);
        snprintf(patch, sizeof(patch), "{\"%s\": \"https://example.com/x?y=1#z\"}", keys[i]);
        expect(patch, "");
    }
    /* a NUL inside the text (jansson keeps one with JSON_ALLOW_NUL) does not hide what follows it */
    json_t *pass = json_loads(VALID, 0, NULL);
    json_object_set_new(pass, "webServiceURL", json_stringn("https://example.com/\0 x", 22));
    cm_problems_t *p = cm_problems_new();
    cm_passjson_check(pass, p);
    assert_int_equal(cm_problems_count(p), 1);
    json_t *e = json_array_get(cm_problems_get(p), 0);
    assert_string_equal(json_string_value(json_object_get(e, "pointer")), "/webServiceURL");
    cm_problems_free(p);
    json_decref(pass);
}

static void problems_are_capped_and_counted(void **state)
{
    cm_problems_t *p = cm_problems_new();
    for (int i = 0; i < CM_PROBLEMS_MAX + 5; i++)
        cm_problems_add_file(p, "x.png", "problem %d", i);
    assert_int_equal(cm_problems_count(p), CM_PROBLEMS_MAX + 5);
    json_t *body = cm_problems_body(p, "pass refused");
    assert_string_equal(json_string_value(json_object_get(body, "error")), "pass refused: 105 problems");
    assert_int_equal(json_array_size(json_object_get(body, "problems")), CM_PROBLEMS_MAX);
    assert_int_equal(json_integer_value(json_object_get(body, "more")), 5);
    json_decref(body);
    cm_problems_free(p);

    p = cm_problems_new();
    cm_problems_add_pointer(p, "/a", "bad \xff byte");
    body = cm_problems_body(p, "pass refused");
    char *text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(text, "{\"error\":\"pass refused: 1 problem\",\"problems\":[{\"message\":\"bad ? "
                              "byte\",\"pointer\":\"/a\"}]}");
    free(text);
    json_decref(body);
    cm_problems_free(p);
}

static void pointers_escape(void **state)
{
    char out[CM_POINTER_MAX];
    assert_string_equal(cm_pointer_join(out, sizeof(out), "", "a/b~c"), "/a~1b~0c");
    assert_string_equal(cm_pointer_index(out, sizeof(out), "/barcodes", 12), "/barcodes/12");
    char small[8];
    assert_string_equal(cm_pointer_join(small, sizeof(small), "/abc", "defgh"), "/abc/d");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_pass_has_no_problem),
        cmocka_unit_test(not_an_object),
        cmocka_unit_test(required_keys),
        cmocka_unit_test(exactly_one_style),
        cmocka_unit_test(boarding_pass_transit_type),
        cmocka_unit_test(fields),
        cmocka_unit_test(field_keys_unique_in_the_pass),
        cmocka_unit_test(date_fields),
        cmocka_unit_test(barcodes),
        cmocka_unit_test(dates),
        cmocka_unit_test(date_grammar),
        cmocka_unit_test(colors),
        cmocka_unit_test(locations_and_beacons),
        cmocka_unit_test(urls),
        cmocka_unit_test(problems_are_capped_and_counted),
        cmocka_unit_test(pointers_escape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
