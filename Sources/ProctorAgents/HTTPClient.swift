import CCurl
import ProctorSandbox

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// libcurl is loaded (`dlopen`) on the first request, so that no other command pays for its
/// dependencies at start-up; then `curl_global_init`, which is not thread-safe and must run once
/// before any easy handle exists. A global `let` is initialised exactly once, lazily and
/// atomically. Nil when ready, otherwise why libcurl cannot be used.
private let curlLoadFailure: String? = {
    var message = [CChar](repeating: 0, count: 1024)
    if proctor_curl_load(&message, message.count) != 0 {
        return String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    let code = proctor_curl_global_init()
    return code == CURLE_OK ? nil : "curl_global_init: \(HTTPClient.text(code))"
}()

/// The answer to one HTTP request.
public struct HTTPResponse: Sendable {
    /// The HTTP status code of the final response.
    public var status: Int
    /// Response headers, names lower-cased; a repeated header keeps its last value.
    public var headers: [String: String]
    /// The response body (at most the client's `maxBodyBytes`).
    public var body: [UInt8]

    /// A response as a server sent it.
    public init(status: Int, headers: [String: String], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// Why a request produced no response. Messages name the URL and the libcurl call; they never
/// contain request header values (API keys).
public struct HTTPClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, as far as retrying is concerned.
    public enum Kind: String, Sendable {
        /// The total timeout elapsed after the connection was made.
        case timeout
        /// No connection (refused, reset, name not resolved, connect timeout) or it broke mid-way:
        /// worth retrying.
        case connection
        /// The body exceeded `maxBodyBytes`.
        case tooLarge
        /// The URL is malformed or not http/https.
        case invalidURL
        /// TLS handshake or certificate verification failed.
        case tls
        /// A header name or value that cannot be sent (line breaks).
        case invalidHeader
        /// Ctrl-C or SIGTERM (`StopSignal`) while it waited: not an answer to retry.
        case interrupted
        /// Anything else libcurl reported.
        case other
    }

    public var kind: Kind
    public var message: String

    public init(kind: Kind, message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

/// A small blocking HTTP client over libcurl's easy interface: one request per call, no
/// redirects followed, TLS verification on, a total and a connect timeout, a capped body.
/// Safe to use from several threads: every call has its own easy handle.
public struct HTTPClient: Sendable {
    /// Total time allowed for one request, connection included, in seconds.
    public var timeoutSeconds: Double
    /// Time allowed to establish the connection, in seconds.
    public var connectTimeoutSeconds: Double
    /// Largest body accepted; a longer one fails with `.tooLarge`.
    public var maxBodyBytes: Int

    /// A client with the given limits (defaults: 5 minutes total, 10 s to connect, 8 MiB body).
    public init(timeoutSeconds: Double = 300, connectTimeoutSeconds: Double = 10, maxBodyBytes: Int = 8 << 20) {
        self.timeoutSeconds = timeoutSeconds
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.maxBodyBytes = maxBodyBytes
    }

    /// POSTs `body` to `url` with the given headers (`Content-Type` is the caller's to set).
    /// A non-2xx status is a response, not an error; only transport failures throw.
    public func post(url: String, headers: [(name: String, value: String)], body: [UInt8]) throws(HTTPClientError)
        -> HTTPResponse
    {
        guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
            throw HTTPClientError(kind: .invalidURL, message: "not an http or https URL: \(url)")
        }
        for header in headers {
            if !Self.isSendable(header.name) || header.name.isEmpty || header.name.contains(":") {
                throw HTTPClientError(kind: .invalidHeader, message: "invalid header name \"\(header.name)\"")
            }
            // The value may be a secret: name the header only.
            if !Self.isSendable(header.value) {
                throw HTTPClientError(
                    kind: .invalidHeader, message: "the value of header \(header.name) contains a line break")
            }
        }
        if let failure = curlLoadFailure {
            throw HTTPClientError(kind: .other, message: failure)
        }
        guard let handle = proctor_curl_easy_init() else {
            throw HTTPClientError(kind: .other, message: "curl_easy_init failed")
        }
        defer { proctor_curl_easy_cleanup(handle) }

        var headerList: UnsafeMutablePointer<curl_slist>? = nil
        defer { proctor_curl_slist_free_all(headerList) }
        // "Expect:" with no value stops libcurl from waiting for `100 Continue` on large bodies.
        for line in headers.map({ "\($0.name): \($0.value)" }) + ["Expect:"] {
            guard let appended = proctor_curl_slist_append(headerList, line) else {
                throw HTTPClientError(kind: .other, message: "curl_slist_append failed")
            }
            headerList = appended
        }

        let sink = ResponseSink(maxBodyBytes: maxBodyBytes)
        let sinkPointer = Unmanaged.passUnretained(sink).toOpaque()
        let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(proctor_curl_error_size()) + 1)
        errorBuffer.initialize(repeating: 0, count: Int(proctor_curl_error_size()) + 1)
        defer { errorBuffer.deallocate() }

        func set(_ what: String, _ code: CURLcode) throws(HTTPClientError) {
            if code != CURLE_OK {
                throw HTTPClientError(kind: .other, message: "curl_easy_setopt \(what): \(Self.text(code))")
            }
        }
        try set("ERRORBUFFER", proctor_curl_setopt_ptr(handle, CURLOPT_ERRORBUFFER, errorBuffer))
        try set("URL", proctor_curl_setopt_str(handle, CURLOPT_URL, url))
        try set("PROTOCOLS", proctor_curl_restrict_protocols(handle))
        // Signals are process-wide and other threads run Swift code: never let libcurl use them.
        try set("NOSIGNAL", proctor_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1))
        // A redirect could carry the API key to another host: follow none and let the caller
        // report the 3xx.
        try set("FOLLOWLOCATION", proctor_curl_setopt_long(handle, CURLOPT_FOLLOWLOCATION, 0))
        try set("SSL_VERIFYPEER", proctor_curl_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, 1))
        try set("SSL_VERIFYHOST", proctor_curl_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, 2))
        try set("TIMEOUT_MS", proctor_curl_setopt_long(handle, CURLOPT_TIMEOUT_MS, Self.milliseconds(timeoutSeconds)))
        try set(
            "CONNECTTIMEOUT_MS",
            proctor_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, Self.milliseconds(connectTimeoutSeconds)))
        try set(
            "MAXFILESIZE_LARGE", proctor_curl_setopt_off(handle, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(maxBodyBytes)))
        try set("ACCEPT_ENCODING", proctor_curl_setopt_str(handle, CURLOPT_ACCEPT_ENCODING, ""))
        try set("POST", proctor_curl_setopt_long(handle, CURLOPT_POST, 1))
        try set(
            "POSTFIELDSIZE_LARGE", proctor_curl_setopt_off(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.count)))
        // COPYPOSTFIELDS copies the bytes, so the buffer need not outlive this closure.
        let copyCode = body.withUnsafeBytes { raw in
            proctor_curl_setopt_ptr(
                handle, CURLOPT_COPYPOSTFIELDS,
                UnsafeMutableRawPointer(mutating: raw.baseAddress ?? UnsafeRawPointer(errorBuffer)))
        }
        try set("COPYPOSTFIELDS", copyCode)
        try set("HTTPHEADER", proctor_curl_setopt_ptr(handle, CURLOPT_HTTPHEADER, headerList))
        try set("WRITEFUNCTION", proctor_curl_setopt_func(handle, CURLOPT_WRITEFUNCTION, responseBodyCallback))
        try set("WRITEDATA", proctor_curl_setopt_ptr(handle, CURLOPT_WRITEDATA, sinkPointer))
        try set("HEADERFUNCTION", proctor_curl_setopt_func(handle, CURLOPT_HEADERFUNCTION, responseHeaderCallback))
        try set("HEADERDATA", proctor_curl_setopt_ptr(handle, CURLOPT_HEADERDATA, sinkPointer))
        // A model that takes minutes to answer must not hold a stop for minutes (and with it, a
        // kept commit that has no row yet): the request is abandoned at Ctrl-C or SIGTERM.
        try set("XFERINFOFUNCTION", proctor_curl_setopt_progress(handle, stopCallback))

        let code = withExtendedLifetime(sink) { proctor_curl_easy_perform(handle) }
        if code != CURLE_OK {
            let detail = String(cString: errorBuffer)
            let reason = "POST \(url): \(detail.isEmpty ? Self.text(code) : detail)"
            var connectTime: curl_off_t = 0
            _ = proctor_curl_getinfo_off(handle, CURLINFO_CONNECT_TIME_T, &connectTime)
            let kind = Self.kind(of: code, overflowed: sink.overflowed, connected: connectTime > 0)
            throw HTTPClientError(
                kind: kind,
                message: kind == .tooLarge ? "POST \(url): response body larger than \(maxBodyBytes) bytes" : reason)
        }
        var status: Int = 0
        _ = proctor_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return HTTPResponse(status: status, headers: sink.headers, body: sink.body)
    }

    private static func kind(of code: CURLcode, overflowed: Bool, connected: Bool) -> HTTPClientError.Kind {
        if overflowed { return .tooLarge }
        switch code {
        case CURLE_ABORTED_BY_CALLBACK:
            return .interrupted
        case CURLE_OPERATION_TIMEDOUT:
            // The connect timeout reports the same code; a connection that never came up is
            // worth another attempt, a server that took the whole budget is not.
            return connected ? .timeout : .connection
        case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY, CURLE_SEND_ERROR,
            CURLE_RECV_ERROR, CURLE_GOT_NOTHING, CURLE_PARTIAL_FILE, CURLE_HTTP2, CURLE_HTTP2_STREAM:
            return .connection
        case CURLE_FILESIZE_EXCEEDED:
            return .tooLarge
        case CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL:
            return .invalidURL
        case CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CONNECT_ERROR, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CACERT_BADFILE:
            return .tls
        default:
            return .other
        }
    }

    private static func isSendable(_ text: String) -> Bool {
        !text.utf8.contains(where: { $0 == 0x0A || $0 == 0x0D || $0 == 0 })
    }

    private static func milliseconds(_ seconds: Double) -> Int {
        guard seconds.isFinite, seconds > 0 else { return 1 }
        return max(1, Int(min(seconds * 1000, Double(Int32.max))))
    }

    static func text(_ code: CURLcode) -> String {
        String(cString: proctor_curl_easy_strerror(code))
    }
}

/// Collects one response; libcurl calls back into it from `curl_easy_perform` on the calling thread.
private final class ResponseSink {
    let maxBodyBytes: Int
    var body: [UInt8] = []
    var headers: [String: String] = [:]
    var overflowed = false

    init(maxBodyBytes: Int) {
        self.maxBodyBytes = maxBodyBytes
    }

    func appendBody(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if body.count + bytes.count > maxBodyBytes {
            overflowed = true
            return false
        }
        body.append(contentsOf: bytes)
        return true
    }

    func headerLine(_ bytes: UnsafeRawBufferPointer) {
        let line = String(decoding: bytes, as: UTF8.self).trimmed(" \t\r\n")
        if line.hasPrefix("HTTP/") {
            // A new status line (after `100 Continue`): only the final response's headers count.
            headers = [:]
            return
        }
        guard let colon = line.firstIndex(of: ":") else { return }
        let name = line[..<colon].lowercased()
        let value = String(line[line.index(after: colon)...]).trimmed(" \t")
        if headers.count < 200 { headers[name] = value }
    }
}

private let responseBodyCallback: proctor_curl_data_fn = { data, size, count, user in
    guard let user else { return 0 }
    let sink = Unmanaged<ResponseSink>.fromOpaque(user).takeUnretainedValue()
    let total = size * count
    guard total > 0, let data else { return total }
    return sink.appendBody(UnsafeRawBufferPointer(start: data, count: total)) ? total : 0
}

private let stopCallback: proctor_curl_progress_fn = { _, _, _, _, _ in StopSignal.received ? 1 : 0 }

private let responseHeaderCallback: proctor_curl_data_fn = { data, size, count, user in
    guard let user else { return 0 }
    let sink = Unmanaged<ResponseSink>.fromOpaque(user).takeUnretainedValue()
    let total = size * count
    guard total > 0, let data else { return total }
    sink.headerLine(UnsafeRawBufferPointer(start: data, count: total))
    return total
}

extension String {
    /// The string without leading and trailing characters from `set` (Foundation-free).
    func trimmed(_ set: String = " \t\r\n") -> String {
        let scalars = Set(set.unicodeScalars)
        var view = Substring(self).unicodeScalars
        while let first = view.first, scalars.contains(first) { view.removeFirst() }
        while let last = view.last, scalars.contains(last) { view.removeLast() }
        return String(view)
    }
}
