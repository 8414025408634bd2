import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A real HTTP/1.1 server for tests: listens on 127.0.0.1 on an ephemeral port, answers each
/// connection with the next scripted reply, records what it received, and stops by itself after
/// `lifetime` seconds (or at `stop()`). Requests are bounded (64 KiB of headers, 16 MiB of body)
/// and read with a receive timeout, so a broken client cannot hold it.
final class ScriptedHTTPServer: @unchecked Sendable {
    enum Reply {
        /// Send this status, these extra headers and this body, then close.
        case respond(status: Int, headers: [(String, String)], body: String)
        /// Read the request and never answer (until the server stops).
        case hang
    }

    struct Request {
        var method: String
        var path: String
        /// Header names lower-cased.
        var headers: [String: String]
        var body: Data
        /// Seconds since the server started.
        var time: Double
    }

    let port: UInt16
    private let lock = NSLock()
    private var script: [Reply]
    private var received: [Request] = []
    private var held: [Int32] = []
    private var stopped = false
    private let listener: Int32
    private let started = Date()
    private let done = DispatchSemaphore(value: 0)

    init(_ script: [Reply], lifetime: Double = 30) throws {
        self.script = script
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0, listen(fd, 16) == 0 else {
            close(fd)
            throw POSIXError(.init(rawValue: errno) ?? .EIO)
        }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        listener = fd
        port = UInt16(bigEndian: address.sin_port)
        let deadline = Date().addingTimeInterval(lifetime)
        let thread = Thread { [self] in
            serve(until: deadline)
            done.signal()
        }
        thread.start()
    }

    deinit {
        stop()
    }

    var baseURL: String { "http://127.0.0.1:\(port)" }

    var requests: [Request] {
        lock.lock()
        defer { lock.unlock() }
        return received
    }

    /// Stops accepting, closes held connections and waits for the server thread.
    func stop() {
        lock.lock()
        let first = !stopped
        stopped = true
        lock.unlock()
        if first { done.wait() }
    }

    private var isStopped: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopped
    }

    private func serve(until deadline: Date) {
        defer {
            lock.lock()
            stopped = true
            let connections = held
            held = []
            lock.unlock()
            connections.forEach { close($0) }
            close(listener)
        }
        while !isStopped && Date() < deadline {
            var poller = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 50) > 0 else { continue }
            let client = accept(listener, nil, nil)
            guard client >= 0 else { continue }
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            guard let request = readRequest(client) else {
                close(client)
                continue
            }
            lock.lock()
            received.append(request)
            let reply =
                script.isEmpty ? .respond(status: 500, headers: [], body: "script exhausted") : script.removeFirst()
            lock.unlock()
            switch reply {
            case .hang:
                lock.lock()
                held.append(client)
                lock.unlock()
            case .respond(let status, let headers, let body):
                let bytes = Array(body.utf8)
                var head = "HTTP/1.1 \(status) Scripted\r\nContent-Type: application/json\r\n"
                head += "Content-Length: \(bytes.count)\r\nConnection: close\r\n"
                for (name, value) in headers { head += "\(name): \(value)\r\n" }
                head += "\r\n"
                let all = Array(head.utf8) + bytes
                var offset = 0
                while offset < all.count {
                    let written = all.withUnsafeBytes {
                        send(client, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL))
                    }
                    if written <= 0 { break }
                    offset += written
                }
                close(client)
            }
        }
    }

    private func readRequest(_ client: Int32) -> Request? {
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 << 10)
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        var headEnd: Int? = nil
        while headEnd == nil {
            let count = chunk.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
            if count <= 0 { return nil }
            buffer += chunk[0..<count]
            if let range = buffer.firstRange(of: separator) { headEnd = range.upperBound }
            if buffer.count > 64 << 10 && headEnd == nil { return nil }
        }
        let head = String(decoding: buffer[0..<(headEnd! - 4)], as: UTF8.self)
        var lines = head.components(separatedBy: "\r\n")
        let requestLine = lines.removeFirst().split(separator: " ")
        guard requestLine.count >= 2 else { return nil }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(
                in: .whitespaces)
        }
        let length = Int(headers["content-length"] ?? "0") ?? 0
        guard length >= 0, length <= 16 << 20 else { return nil }
        var body = Array(buffer[headEnd!...])
        while body.count < length {
            let count = chunk.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
            if count <= 0 { return nil }
            body += chunk[0..<count]
        }
        return Request(
            method: String(requestLine[0]), path: String(requestLine[1]), headers: headers,
            body: Data(body.prefix(length)), time: Date().timeIntervalSince(started))
    }
}
