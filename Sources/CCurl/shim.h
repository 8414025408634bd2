#ifndef PROCTOR_CCURL_SHIM_H
#define PROCTOR_CCURL_SHIM_H

#include <curl/curl.h>
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

// libcurl is loaded on first use with dlopen, not linked: only the HTTP agent needs it, and
// linking it made every `proctor` start-up load and relocate about 25 shared libraries
// (gnutls, krb5, ldap, ssh2, ...). The headers still come from pkg-config; every call goes
// through the function pointers below, so the executable references no curl symbol and the
// linker's --as-needed drops libcurl from its NEEDED entries.
//
// curl_easy_setopt and curl_easy_getinfo are variadic and their flag macros are expressions:
// neither imports into Swift, so the typed wrappers below are the only way Swift calls them.

#ifndef PROCTOR_CURL_LIBRARY
#if defined(__APPLE__)
#define PROCTOR_CURL_LIBRARY "libcurl.4.dylib"
#else
#define PROCTOR_CURL_LIBRARY "libcurl.so.4"
#endif
#endif

struct proctor_curl_api {
    int loaded;
    CURLcode (*global_init)(long flags);
    CURL *(*easy_init)(void);
    void (*easy_cleanup)(CURL *handle);
    CURLcode (*easy_setopt)(CURL *handle, CURLoption option, ...);
    CURLcode (*easy_getinfo)(CURL *handle, CURLINFO info, ...);
    CURLcode (*easy_perform)(CURL *handle);
    const char *(*easy_strerror)(CURLcode code);
    struct curl_slist *(*slist_append)(struct curl_slist *list, const char *line);
    void (*slist_free_all)(struct curl_slist *list);
};

/// The one table of this module (a static local of a static inline function: one per importing module).
static inline struct proctor_curl_api *proctor_curl_api(void) {
    static struct proctor_curl_api api;
    return &api;
}

/// Loads libcurl and resolves every function proctor calls. Not thread-safe: call it once,
/// before any other function here (HTTPClient does so from a global `let` initialiser).
/// Returns 0, or -1 with a message in `error`.
static inline int proctor_curl_load(char *error, size_t size) {
    struct proctor_curl_api *api = proctor_curl_api();
    if (api->loaded) return 0;
    void *lib = dlopen(PROCTOR_CURL_LIBRARY, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *why = dlerror();
        snprintf(error, size, "cannot load %s (the HTTP agent needs libcurl 4; on Debian/Ubuntu: apt-get install libcurl4): %s",
                 PROCTOR_CURL_LIBRARY, why ? why : "unknown error");
        return -1;
    }
#define PROCTOR_CURL_SYM(field, name)                                                                     \
    do {                                                                                                  \
        *(void **)(&api->field) = dlsym(lib, name);                                                       \
        if (!api->field) {                                                                                \
            snprintf(error, size, "%s has no symbol %s: not a usable libcurl", PROCTOR_CURL_LIBRARY, name); \
            return -1;                                                                                    \
        }                                                                                                 \
    } while (0)
    PROCTOR_CURL_SYM(global_init, "curl_global_init");
    PROCTOR_CURL_SYM(easy_init, "curl_easy_init");
    PROCTOR_CURL_SYM(easy_cleanup, "curl_easy_cleanup");
    PROCTOR_CURL_SYM(easy_setopt, "curl_easy_setopt");
    PROCTOR_CURL_SYM(easy_getinfo, "curl_easy_getinfo");
    PROCTOR_CURL_SYM(easy_perform, "curl_easy_perform");
    PROCTOR_CURL_SYM(easy_strerror, "curl_easy_strerror");
    PROCTOR_CURL_SYM(slist_append, "curl_slist_append");
    PROCTOR_CURL_SYM(slist_free_all, "curl_slist_free_all");
#undef PROCTOR_CURL_SYM
    // The library stays loaded for the life of the process (the handle is never closed).
    api->loaded = 1;
    return 0;
}

typedef size_t (*proctor_curl_data_fn)(char *data, size_t size, size_t count, void *user);
/// CURLOPT_XFERINFOFUNCTION: called about once a second and on every transfer; non-zero aborts.
typedef int (*proctor_curl_progress_fn)(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow);

static inline CURL *proctor_curl_easy_init(void) { return proctor_curl_api()->easy_init(); }

static inline void proctor_curl_easy_cleanup(CURL *handle) { proctor_curl_api()->easy_cleanup(handle); }

static inline CURLcode proctor_curl_easy_perform(CURL *handle) { return proctor_curl_api()->easy_perform(handle); }

static inline const char *proctor_curl_easy_strerror(CURLcode code) { return proctor_curl_api()->easy_strerror(code); }

static inline struct curl_slist *proctor_curl_slist_append(struct curl_slist *list, const char *line) {
    return proctor_curl_api()->slist_append(list, line);
}

static inline void proctor_curl_slist_free_all(struct curl_slist *list) { proctor_curl_api()->slist_free_all(list); }

static inline CURLcode proctor_curl_setopt_long(CURL *handle, CURLoption option, long value) {
    return proctor_curl_api()->easy_setopt(handle, option, value);
}

static inline CURLcode proctor_curl_setopt_ptr(CURL *handle, CURLoption option, void *value) {
    return proctor_curl_api()->easy_setopt(handle, option, value);
}

static inline CURLcode proctor_curl_setopt_str(CURL *handle, CURLoption option, const char *value) {
    return proctor_curl_api()->easy_setopt(handle, option, value);
}

static inline CURLcode proctor_curl_setopt_func(CURL *handle, CURLoption option, proctor_curl_data_fn value) {
    return proctor_curl_api()->easy_setopt(handle, option, value);
}

static inline CURLcode proctor_curl_setopt_progress(CURL *handle, proctor_curl_progress_fn value) {
    CURLcode rc = proctor_curl_api()->easy_setopt(handle, CURLOPT_XFERINFOFUNCTION, value);
    if (rc != CURLE_OK) return rc;
    return proctor_curl_api()->easy_setopt(handle, CURLOPT_NOPROGRESS, 0L);
}

static inline CURLcode proctor_curl_setopt_off(CURL *handle, CURLoption option, curl_off_t value) {
    return proctor_curl_api()->easy_setopt(handle, option, value);
}

static inline CURLcode proctor_curl_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return proctor_curl_api()->easy_getinfo(handle, info, value);
}

static inline CURLcode proctor_curl_getinfo_off(CURL *handle, CURLINFO info, curl_off_t *value) {
    return proctor_curl_api()->easy_getinfo(handle, info, value);
}

static inline CURLcode proctor_curl_getinfo_str(CURL *handle, CURLINFO info, char **value) {
    return proctor_curl_api()->easy_getinfo(handle, info, value);
}

/// Only http and https, for the request and for any redirect (which proctor does not follow anyway).
static inline CURLcode proctor_curl_restrict_protocols(CURL *handle) {
#if LIBCURL_VERSION_NUM >= 0x075500
    CURLcode rc = proctor_curl_api()->easy_setopt(handle, CURLOPT_PROTOCOLS_STR, "http,https");
    if (rc != CURLE_OK) return rc;
    return proctor_curl_api()->easy_setopt(handle, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    CURLcode rc = proctor_curl_api()->easy_setopt(handle, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    if (rc != CURLE_OK) return rc;
    return proctor_curl_api()->easy_setopt(handle, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
}

static inline CURLcode proctor_curl_global_init(void) { return proctor_curl_api()->global_init(CURL_GLOBAL_ALL); }

static inline long proctor_curl_error_size(void) {
    return CURL_ERROR_SIZE;
}

#endif
