/*
 * The Redis data model shared by the api, the signer and the pusher. Every key the system writes is
 * named here; identifiers are validated (common/ids.h) before they reach a key, and none of them can
 * contain ':' so keys never collide.
 *
 *   pk:seq                        INCR counter. Every change to a pass or template takes the next value;
 *                                 a pass's "version" (its lastUpdated tag) is such a value.
 *   pk:tpl:{templateId}           hash. "@rev" = seq value of the last upload, "@files" = file count,
 *                                 "file:{name}" = the bytes of each file of the pass model (pass.json,
 *                                 icon.png, en.lproj/pass.strings, ...).
 *   pk:pass:{ptid}:{serial}       hash. templateId, overrides (JSON given by the issuer), doc (the merged
 *                                 pass.json, without the keys the server owns), authToken, version,
 *                                 lastModified (Unix seconds, strictly increasing per pass), createdAt.
 *   pk:passfile:{ptid}:{serial}   hash: the pass's own files, name ("strip@2x.png", "fr.lproj/logo.png") ->
 *                                 bytes. Each one replaces the template's file of that name in the signed
 *                                 bundle. Written (with a new pass version and its event) by the api's
 *                                 PUT/DELETE /admin/v1/passes/{ptid}/{serial}/files/{name}.
 *   pk:regs:{ptid}:{serial}       set of deviceLibraryIdentifiers registered for the pass.
 *   pk:devpasses:{dli}:{ptid}     set of serials of that pass type the device registered.
 *   pk:devtoken:{dli}:{ptid}      string: the device's push token for that pass type (Apple: the token
 *                                 belongs to the device and the pass type, not to a pass).
 *   pk:passtype:{ptid}            hash written by the signer at start: teamIdentifier, notAfter. The api
 *                                 refuses passes of a type with no such entry (no certificate).
 *   pk:bundle:{ptid}:{serial}     hash with TTL: the newest signed .pkpass of the pass: "data" = the
 *                                 bytes, "id" = "{version}:{templateRev}:{signing tag}", where the tag
 *                                 is a digest of the certificate, the WWDR and PUBLIC_URL, so that a
 *                                 renewed certificate or a new URL is never served from the cache. One
 *                                 bundle per pass: a new version replaces the old one.
 *   pk:signer:epoch               string: a random value the signer sets when it is missing. A new value
 *                                 means a new data set (FLUSHALL, restart without persistence), where
 *                                 pk:seq and so template revisions start again: the signers then drop
 *                                 the templates they keep in memory.
 *   pk:events                     stream. One entry per change: type (pass.created | pass.updated),
 *                                 passTypeIdentifier, serialNumber, version.
 *   pk:fanout                     stream written by the pushers: an event for a pass with more registered
 *                                 devices than PUSHER_FANOUT_CHUNK is split into chunks (type fanout.chunk,
 *                                 passTypeIdentifier, serialNumber, version, event = the event's id,
 *                                 devices = space-separated deviceLibraryIdentifiers) so every pusher
 *                                 shares one large fan-out.
 *   pk:deadletter                 stream of pushes given up after PUSHER_MAX_ATTEMPTS (passTypeIdentifier,
 *                                 token, devices, events, status, reason, attempts, consumer), capped.
 *   pk:logs                       list of the newest device log lines (POST /v1/log), capped.
 *
 * The pushers read pk:events and pk:fanout in the consumer group CM_EVENTS_GROUP, and trim both below
 * what every group of the stream has acknowledged.
 * Scripts compute some keys from their arguments, so the layout needs a single Redis (or a Redis with
 * one slot), not Redis Cluster.
 */
#ifndef COMMON_KEYS_H
#define COMMON_KEYS_H

#define CM_KEY_SEQ           "pk:seq"
#define CM_KEY_EVENTS        "pk:events"
#define CM_KEY_LOGS          "pk:logs"
#define CM_KEY_FANOUT        "pk:fanout"
#define CM_KEY_DEADLETTER    "pk:deadletter"
#define CM_EVENTS_GROUP      "pushers"
#define CM_KEY_TEMPLATE_FMT  "pk:tpl:%s"
#define CM_KEY_PASS_FMT      "pk:pass:%s:%s"
#define CM_KEY_PASSFILE_FMT  "pk:passfile:%s:%s"
#define CM_KEY_REGS_FMT      "pk:regs:%s:%s"
#define CM_KEY_DEVPASSES_FMT "pk:devpasses:%s:%s"
#define CM_KEY_DEVTOKEN_FMT  "pk:devtoken:%s:%s"
#define CM_KEY_PASSTYPE_FMT  "pk:passtype:%s"
#define CM_KEY_BUNDLE_FMT    "pk:bundle:%s:%s"

/* Template file fields are "file:" + the file's path inside the pass model. */
#define CM_TEMPLATE_FILE_PREFIX "file:"

/* The longest key built from validated identifiers fits in this many bytes. */
#define CM_KEY_MAX 512

#endif
