#ifndef PROCTOR_CCURL_SHIM_H
#define PROCTOR_CCURL_SHIM_H

#include <curl/curl.h>

// curl_easy_setopt and curl_easy_getinfo are variadic and their flag macros are expressions:
// neither imports into Swift, so the typed wrappers below are the only way Swift calls them.

typedef size_t (*proctor_curl_data_fn)(char *data, size_t size, size_t count, void *user);

static inline CURL *proctor_curl_easy_init(void) { return curl_easy_init(); }

static inline void proctor_curl_easy_cleanup(CURL *handle) { curl_easy_cleanup(handle); }

static inline CURLcode proctor_curl_easy_perform(CURL *handle) { return curl_easy_perform(handle); }

static inline const char *proctor_curl_easy_strerror(CURLcode code) { return curl_easy_strerror(code); }

static inline struct curl_slist *proctor_curl_slist_append(struct curl_slist *list, const char *line) {
    return curl_slist_append(list, line);
}

static inline void proctor_curl_slist_free_all(struct curl_slist *list) { curl_slist_free_all(list); }

static inline CURLcode proctor_curl_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode proctor_curl_setopt_ptr(CURL *handle, CURLoption option, void *value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode proctor_curl_setopt_str(CURL *handle, CURLoption option, const char *value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode proctor_curl_setopt_func(CURL *handle, CURLoption option, proctor_curl_data_fn value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode proctor_curl_setopt_off(CURL *handle, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode proctor_curl_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl_easy_getinfo(handle, info, value);
}

static inline CURLcode proctor_curl_getinfo_off(CURL *handle, CURLINFO info, curl_off_t *value) {
    return curl_easy_getinfo(handle, info, value);
}

static inline CURLcode proctor_curl_getinfo_str(CURL *handle, CURLINFO info, char **value) {
    return curl_easy_getinfo(handle, info, value);
}

/// Only http and https, for the request and for any redirect (which proctor does not follow anyway).
static inline CURLcode proctor_curl_restrict_protocols(CURL *handle) {
#if LIBCURL_VERSION_NUM >= 0x075500
    CURLcode rc = curl_easy_setopt(handle, CURLOPT_PROTOCOLS_STR, "http,https");
    if (rc != CURLE_OK) return rc;
    return curl_easy_setopt(handle, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    CURLcode rc = curl_easy_setopt(handle, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    if (rc != CURLE_OK) return rc;
    return curl_easy_setopt(handle, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
}

static inline CURLcode proctor_curl_global_init(void) { return curl_global_init(CURL_GLOBAL_ALL); }

static inline long proctor_curl_error_size(void) {
    return CURL_ERROR_SIZE;
}

#endif
