/*
 * A list of the problems found in what a client uploaded, each tied to where it is: a JSON pointer
 * (RFC 6901) into pass.json, or a file of the pass. Checks append to one list so that the client
 * learns every problem at once; the api answers it as the body of a 422.
 *
 * The list keeps the first CM_PROBLEMS_MAX problems and counts the rest. Messages are sentences
 * that read after their pointer or file ("/barcodes/0/message: must be a string"); text that is not
 * UTF-8 is made printable before it goes into JSON.
 */
#ifndef COMMON_PROBLEMS_H
#define COMMON_PROBLEMS_H

#include <stddef.h>

struct json_t;

#define CM_PROBLEMS_MAX 100

typedef struct cm_problems cm_problems_t;

/* A new, empty list (never NULL: out of memory aborts). */
cm_problems_t *cm_problems_new(void);
/* Frees the list; NULL is accepted. */
void cm_problems_free(cm_problems_t *p);

/* Appends {"pointer": pointer, "message": ...}. pointer is an RFC 6901 pointer ("" = the whole
 * document). */
void cm_problems_add_pointer(cm_problems_t *p, const char *pointer, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Appends {"file": file, "message": ...}. file is a path inside the pass ("fr.lproj/logo.png"). */
void cm_problems_add_file(cm_problems_t *p, const char *file, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* How many problems were added (also those beyond CM_PROBLEMS_MAX). */
size_t cm_problems_count(const cm_problems_t *p);

/* The kept problems, in the order they were added: a borrowed JSON array of objects. */
struct json_t *cm_problems_get(const cm_problems_t *p);

/* A new JSON object for an answer: {"error": "<subject>: N problem(s)", "problems": [...]}, with
 * "more": the number left out when there were more than CM_PROBLEMS_MAX. */
struct json_t *cm_problems_body(const cm_problems_t *p, const char *subject);

/* Writes the RFC 6901 pointer base + "/" + token into out (token's "~" and "/" escaped as "~0" and
 * "~1"). Returns out. A result longer than out_size - 1 is cut (the pointers built here, from pass.json
 * key names this code chooses and array indexes, are far shorter than CM_POINTER_MAX). */
#define CM_POINTER_MAX 256
char *cm_pointer_join(char *out, size_t out_size, const char *base, const char *token);
/* The same with an array index as the token. */
char *cm_pointer_index(char *out, size_t out_size, const char *base, size_t index);

#endif
