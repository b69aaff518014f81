/* Identifier validation; see common/ids.h. Hand-written: these are project rules, not a format. */
#include "common/ids.h"

static int is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

int cm_id_char_is_plain(char c)
{
    return is_alnum(c) || c == '.' || c == '_' || c == '-';
}

int cm_id_is_plain(const char *s, size_t len)
{
    if (len == 0 || len > CM_ID_MAX || (s[0] == '.' && (len == 1 || (len == 2 && s[1] == '.'))))
        return 0; /* "." and ".." would be resolved away in URLs */
    for (size_t i = 0; i < len; i++)
        if (!cm_id_char_is_plain(s[i]))
            return 0;
    return 1;
}

int cm_id_is_pass_type(const char *s, size_t len)
{
    if (len <= 5 || len > CM_ID_MAX || s[0] != 'p' || s[1] != 'a' || s[2] != 's' || s[3] != 's' ||
        s[4] != '.')
        return 0;
    for (size_t i = 5; i < len; i++)
        if (!is_alnum(s[i]) && s[i] != '.' && s[i] != '-')
            return 0;
    return 1;
}

int cm_id_is_push_token(const char *s, size_t len)
{
    if (len == 0 || len > CM_PUSH_TOKEN_MAX || len % 2 != 0)
        return 0; /* the hex form of whole bytes */
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return 0;
    }
    return 1;
}

int cm_id_is_auth_token(const char *s, size_t len)
{
    if (len < CM_AUTH_TOKEN_MIN || len > CM_AUTH_TOKEN_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] <= ' ' || s[i] > '~')
            return 0;
    return 1;
}
