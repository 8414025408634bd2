import Foundation
import ProctorTestSupport
import XCTest

/// `network = "allowlist"` (issue 12), attacked from inside a real agent sandbox started by
/// `proctor exec` and judged from outside: what each loopback listener received, the audit lines,
/// the exit status. Names reach the listeners through the proxy's test resolver
/// (`PROCTOR_NET_HOSTS_FILE`); nothing here connects to anything but loopback: the refusal of
/// private and link-local ranges is the proxy's decision on addresses the resolver returns.
final class NetworkProxyAttackTests: XCTestCase {
    override func setUpWithError() throws {
        try requireProctorBinary()
    }

    /// A workspace whose agent phase has the allowlist, and the resolver file beside it.
    func workspace(agent: String, hosts: String) throws -> (TestWorkspace, [String: String]) {
        let ws = try TestWorkspace(extra: "[agent]\nkind = \"command\"\ncommand = [\"true\"]\n" + agent)
        try ws.write(".hosts", hosts)
        var env = ProcessInfo.processInfo.environment
        env["PROCTOR_NET_HOSTS_FILE"] = ws.path(".hosts")
        return (ws, env)
    }

    /// Python run in the agent sandbox: `ask(first_line, then)` sends a request to the proxy, prints
    /// the status line it got, and for a tunnel that opened sends `then` and prints the answer.
    static let client = """
        import os, socket
        proxy = os.environ['HTTPS_PROXY'].rsplit(':', 1)
        def ask(tag, request, then=b''):
            try:
                s = socket.create_connection((proxy[0].split('//')[1], int(proxy[1])), timeout=5)
                s.sendall(request.encode())
                data = b''
                while b'\\r\\n\\r\\n' not in data:
                    chunk = s.recv(4096)
                    if not chunk: break
                    data += chunk
                status = data.split(b'\\r\\n')[0].decode()
                body = data.split(b'\\r\\n\\r\\n', 1)[1] if b'\\r\\n\\r\\n' in data else b''
                if ' 200 ' in status and then:
                    s.sendall(then)
                while True:
                    chunk = s.recv(4096)
                    if not chunk: break
                    body += chunk
                print(tag, status, '|', body.decode(errors='replace').replace('\\r\\n', ' ').strip())
            except OSError as e:
                print(tag, 'ERROR', e)

        """

    /// A tunnel to an allowed host that reads nothing, its buffer full, then reset by the client:
    /// poll reported the client's error at every turn while the proxy waited to pass the buffer on,
    /// and the proxy (the launcher's child, outside the sandbox's limits) spun a host core until the
    /// phase ended. It sleeps now. Judged from outside: the CPU time of every process of the launch.
    func testAResetTunnelDoesNotSpinTheProxy() throws {
        let (sink, port) = try loopbackSocket(Int32(SOCK_STREAM.rawValue))
        defer { close(sink) }
        XCTAssertEqual(listen(sink, 4), 0)  // connections complete in the backlog; nothing is ever read
        let (ws, env) = try workspace(agent: "network = \"allowlist\"\nallow_hosts = [\"sink.test:\(port)\"]\nallow_private = true\n",
                                      hosts: "sink.test 127.0.0.1\n")
        let script = """
            import os, socket, struct, time
            proxy = os.environ['HTTPS_PROXY'].rsplit(':', 1)
            s = socket.create_connection((proxy[0].split('//')[1], int(proxy[1])))
            s.sendall(b"CONNECT sink.test:\(port) HTTP/1.1\\r\\n\\r\\n")
            print(s.recv(100), flush=True)
            s.setblocking(False)
            until = time.time() + 2
            while time.time() < until:
                try: s.send(b"A" * 65536)
                except BlockingIOError: time.sleep(0.05)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
            s.close()
            print("reset", flush=True)
            time.sleep(4)
            """
        let output = try CapturedOutput()
        var environment = env
        environment["PROCTOR_MACHINE_LOCK"] = ws.path(".machine.lock")
        let run = try startProcess([proctorBinary, "exec", "--workspace", ws.root, "--phase", "agent", "--", "python3", "-c", script],
                                   environment: environment, output: output)
        defer { if run.isRunning { kill(run.processIdentifier, SIGKILL) } }
        XCTAssertTrue(waitUntil(timeout: 30) { output.stdout.contains("reset") || !run.isRunning }, output.stdout + output.stderr)
        Thread.sleep(forTimeInterval: 0.5)
        func ticks() -> Int {
            // The launcher and what it forked (the proxy among them) carry its arguments, the workspace's path.
            processes(containing: ws.root).filter { $0.contains("proctor-sandbox") }.compactMap { Int32($0.prefix { $0 != ":" }) }.reduce(0) { sum, pid in
                let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
                let fields = stat.split(separator: ")").last?.split(separator: " ") ?? []
                return sum + (fields.count > 13 ? (Int(fields[11]) ?? 0) + (Int(fields[12]) ?? 0) : 0)
            }
        }
        let before = ticks()
        Thread.sleep(forTimeInterval: 2)
        let spent = ticks() - before
        XCTAssertTrue(run.isRunning, "the launch ended before it was measured: " + output.stdout + output.stderr)
        XCTAssertLessThan(spent, Int(sysconf(Int32(_SC_CLK_TCK))) / 2, "the launch's processes spent \(spent) ticks in 2 s of an idle tunnel")
        run.waitUntilExit()
    }

    func testAllowlistAdmitsOnlyListedHostsAndPortsAndNoOtherRouteExists() throws {
        let allowed = try LoopbackListener(), byAddress = try LoopbackListener(), other = try LoopbackListener()
        let udp = try LoopbackUDP()
        let (ws, env) = try workspace(agent: """
            network = "allowlist"
            allow_hosts = ["allowed.test:\(allowed.port)", "127.0.0.1:\(byAddress.port)"]
            allow_private = true
            """, hosts: "allowed.test 127.0.0.1\nrefused.test 127.0.0.1\n")
        let script = Self.client + """
            ask('tunnel', 'CONNECT allowed.test:\(allowed.port) HTTP/1.1\\r\\nHost: allowed.test:\(allowed.port)\\r\\n\\r\\n', b'secret-through-tunnel')
            ask('plain', 'GET http://allowed.test:\(allowed.port)/path?q=1 HTTP/1.1\\r\\nHost: allowed.test:\(allowed.port)\\r\\nProxy-Authorization: x\\r\\n\\r\\n')
            ask('address', 'CONNECT 127.0.0.1:\(byAddress.port) HTTP/1.1\\r\\n\\r\\n', b'to-the-listed-port')
            ask('unlisted-name', 'CONNECT refused.test:\(other.port) HTTP/1.1\\r\\n\\r\\n', b'LEAK-1')
            ask('unlisted-port', 'CONNECT allowed.test:\(other.port) HTTP/1.1\\r\\n\\r\\n', b'LEAK-2')
            ask('unlisted-address-port', 'CONNECT 127.0.0.1:\(other.port) HTTP/1.1\\r\\n\\r\\n', b'LEAK-3')
            ask('host-header', 'GET http://allowed.test:\(allowed.port)/ HTTP/1.1\\r\\nHost: refused.test:\(other.port)\\r\\n\\r\\n')
            ask('origin-form', 'GET / HTTP/1.1\\r\\nHost: refused.test:\(other.port)\\r\\n\\r\\n')
            ask('https-uri', 'GET https://refused.test:\(other.port)/ HTTP/1.1\\r\\n\\r\\n')
            # Around the proxy: a direct connection, UDP, raw and packet sockets, IPv6.
            try:
                socket.create_connection(('127.0.0.1', \(other.port)), timeout=2).sendall(b'LEAK-direct'); print('direct CONNECTED')
            except OSError as e: print('direct refused', e)
            try:
                socket.create_connection(('::1', \(other.port)), timeout=2).sendall(b'LEAK-v6'); print('v6 CONNECTED')
            except OSError as e: print('v6 refused', e)
            try:
                socket.create_connection(('192.0.2.1', 80), timeout=2); print('TEST-NET CONNECTED')
            except OSError as e: print('TEST-NET unreachable', e)
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.sendto(b'LEAK-udp', ('127.0.0.1', \(udp.port)))
            try:
                u.sendto(b'LEAK-udp', ('192.0.2.1', 53)); print('udp out SENT')
            except OSError as e: print('udp out unreachable', e)
            for fam, kind, proto in [(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP), (socket.AF_PACKET, socket.SOCK_RAW, 0)]:
                try: socket.socket(fam, kind, proto); print('RAW ALLOWED', fam)
                except OSError: print('raw denied', fam)
            # The proxy's port cannot be taken over from inside.
            try:
                s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', int(proxy[1]))); print('PROXY PORT TAKEN')
            except OSError as e: print('proxy port held', e)
            print('still running')
            """
        let out = try ws.exec([python, "-c", script], phase: "agent", environment: env)
        let text = out.stdout + out.stderr
        XCTAssertEqual(out.status, 0, text)
        func line(_ tag: String) -> String { out.stdout.split(separator: "\n").first { $0.hasPrefix(tag + " ") }.map(String.init) ?? "" }
        XCTAssertTrue(line("tunnel").contains("200 Connection established | HTTP/1.0 200 OK  reply-from-\(allowed.port)"), text)
        XCTAssertTrue(line("plain").contains(" 200 OK | reply-from-\(allowed.port)"), text)
        XCTAssertTrue(line("address").contains("200 Connection established | HTTP/1.0 200 OK  reply-from-\(byAddress.port)"), text)
        for tag in ["unlisted-name", "unlisted-port", "unlisted-address-port"] {
            XCTAssertTrue(line(tag).contains("403 Forbidden | proctor: not in allow_hosts"), "\(tag): \(text)")
        }
        XCTAssertTrue(line("host-header").contains("403 Forbidden | proctor: the Host header names another host"), text)
        XCTAssertTrue(line("origin-form").contains("403 Forbidden | proctor: not in allow_hosts"), text)
        XCTAssertTrue(line("https-uri").contains("403 Forbidden"), text)
        XCTAssertTrue(out.stdout.contains("direct refused"), text)
        XCTAssertTrue(out.stdout.contains("v6 refused"), text)
        XCTAssertTrue(out.stdout.contains("TEST-NET unreachable"), text)
        XCTAssertTrue(out.stdout.contains("udp out unreachable"), text)
        XCTAssertFalse(text.contains("RAW ALLOWED"), text)
        XCTAssertTrue(out.stdout.contains("proxy port held"), text)
        XCTAssertTrue(out.stdout.contains("still running"), text)

        // From outside: each listener got exactly what was allowed to reach it.
        let got = allowed.received()
        XCTAssertEqual(got.count, 2, "\(got)")
        XCTAssertTrue(got.contains("secret-through-tunnel"), "\(got)")
        let plain = got.first { $0.hasPrefix("GET ") } ?? ""
        XCTAssertTrue(plain.hasPrefix("GET /path?q=1 HTTP/1.1\r\n"), plain)
        XCTAssertTrue(plain.contains("Connection: close\r\n") && !plain.contains("Proxy-Authorization"), plain)
        XCTAssertEqual(byAddress.received(), ["to-the-listed-port"])
        XCTAssertEqual(other.received(), [], "the unlisted listener received a connection")
        XCTAssertEqual(udp.received(), [], "the host's UDP listener received a datagram")

        // Every refusal is audited with its destination; the allowed ones are not.
        let refusals = ws.audit().filter { $0["kind"] as? String == "network" }
        XCTAssertEqual(refusals.count, 6, "\(refusals)")
        XCTAssertTrue(refusals.allSatisfy { $0["decision"] as? String == "denied" && $0["phase"] as? String == "agent" })
        let destinations = Set(refusals.map { "\($0["host"] as? String ?? ""):\($0["port"] as? Int ?? 0)" })
        XCTAssertEqual(destinations, ["refused.test:\(other.port)", "allowed.test:\(other.port)", "127.0.0.1:\(other.port)",
                                      "allowed.test:\(allowed.port)", ":0"])
        XCTAssertTrue(refusals.contains { ($0["detail"] as? String) == "not in allow_hosts" })
    }

    /// An allowed name that resolves to loopback, link-local, private or unspecified addresses is
    /// refused without `allow_private` (DNS rebinding); nothing is connected to.
    func testPrivateAddressesOfAllowedNamesAreRefused() throws {
        let target = try LoopbackListener()
        let names = ["rebind.test 127.0.0.1", "meta.test 169.254.169.254", "lan.test 10.1.2.3 192.168.0.9",
                     "v6ll.test fe80::1", "v6lo.test ::1", "ula.test fd00::5", "mapped.test ::ffff:127.0.0.1",
                     "mixed.test 93.184.216.34 172.16.0.1", "zero.test 0.0.0.0", "cgnat.test 100.64.0.1"]
        let (ws, env) = try workspace(agent: """
            network = "allowlist"
            allow_hosts = [\(names.map { "\"\($0.split(separator: " ")[0]):\(target.port)\"" }.joined(separator: ", ")), "nowhere.test:\(target.port)"]
            """, hosts: names.joined(separator: "\n") + "\n")
        var script = Self.client
        for name in names.map({ $0.split(separator: " ")[0] }) + ["nowhere.test"] {
            script += "ask('\(name)', 'CONNECT \(name):\(target.port) HTTP/1.1\\r\\n\\r\\n', b'LEAK')\n"
        }
        let out = try ws.exec([python, "-c", script], phase: "agent", environment: env)
        let text = out.stdout + out.stderr
        XCTAssertEqual(out.status, 0, text)
        let expected = ["rebind.test": "127.0.0.1, a loopback address", "meta.test": "169.254.169.254, a link-local address",
                        "lan.test": "10.1.2.3, a private address", "v6ll.test": "fe80::1, a link-local address",
                        "v6lo.test": "::1, a loopback address", "ula.test": "fd00::5, a private (unique local) address",
                        "mapped.test": "::ffff:127.0.0.1, a loopback address", "mixed.test": "172.16.0.1, a private address",
                        "zero.test": "0.0.0.0, an unspecified address", "cgnat.test": "100.64.0.1, a shared (carrier NAT) address"]
        for (name, why) in expected {
            let line = out.stdout.split(separator: "\n").first { $0.hasPrefix(name + " ") } ?? ""
            XCTAssertTrue(line.contains("403 Forbidden | proctor: resolves to \(why)"), "\(name): \(line)")
        }
        XCTAssertTrue(out.stdout.contains("nowhere.test HTTP/1.1 403 Forbidden | proctor: does not resolve"), text)
        XCTAssertEqual(target.received(), [], "a refused destination received a connection")
        let refusals = ws.audit().filter { $0["kind"] as? String == "network" }
        XCTAssertEqual(refusals.count, expected.count + 1, "\(refusals)")
        XCTAssertTrue(refusals.contains { ($0["detail"] as? String)?.contains("169.254.169.254, a link-local address") == true })
    }

    /// Without the test resolver the proxy asks the system's (getaddrinfo, from the static launcher):
    /// `localhost` resolves through /etc/hosts to loopback and is refused like a rebinding name.
    func testSystemResolverAnswerIsCheckedToo() throws {
        let target = try LoopbackListener()
        let ws = try TestWorkspace(extra: "[agent]\nkind = \"command\"\ncommand = [\"true\"]\nnetwork = \"allowlist\"\nallow_hosts = [\"localhost:\(target.port)\"]\n")
        var env = ProcessInfo.processInfo.environment
        env["PROCTOR_NET_HOSTS_FILE"] = nil
        let out = try ws.exec([python, "-c", Self.client + "ask('localhost', 'CONNECT localhost:\(target.port) HTTP/1.1\\r\\n\\r\\n', b'LEAK')\n"],
                              phase: "agent", environment: env)
        XCTAssertTrue(out.stdout.contains("localhost HTTP/1.1 403 Forbidden | proctor: resolves to "), out.stdout + out.stderr)
        XCTAssertTrue(out.stdout.contains("a loopback address (allow_private = false)"), out.stdout + out.stderr)
        XCTAssertEqual(target.received(), [])
    }

    /// A flood of refused requests is reported up to the proxy's cap and counted past it, and does not
    /// stop the command; an allowed destination with nothing listening answers 502.
    func testRefusalFloodIsCappedAndCountedAndAClosedPortIsABadGateway() throws {
        let closed = try LoopbackListener()
        let closedPort = closed.port
        let (ws, env) = try workspace(agent: """
            network = "allowlist"
            allow_hosts = ["gone.test:\(closedPort)"]
            allow_private = true
            """, hosts: "gone.test 127.0.0.1\n")
        closed.stop()
        let script = Self.client + """
            for i in range(1100):
                s = socket.create_connection(('127.0.0.1', 3128)); s.sendall(b'CONNECT flood.test:443 HTTP/1.1\\r\\n\\r\\n'); s.recv(100); s.close()
            ask('gone', 'CONNECT gone.test:\(closedPort) HTTP/1.1\\r\\n\\r\\n', b'x')
            print('still running')
            """
        let out = try ws.exec([python, "-c", script], phase: "agent", environment: env)
        XCTAssertEqual(out.status, 0, out.stdout + out.stderr)
        XCTAssertTrue(out.stdout.contains("gone HTTP/1.1 502 Bad Gateway | proctor: connect failed: Connection refused"), out.stdout)
        XCTAssertTrue(out.stdout.contains("still running"))
        let network = ws.audit().filter { $0["kind"] as? String == "network" }
        XCTAssertEqual(network.filter { $0["host"] as? String == "flood.test" }.count, 1000)
        let counted = network.filter { $0["count"] != nil }
        XCTAssertEqual(counted.count, 1, "\(counted)")
        XCTAssertEqual(counted.first?["count"] as? Int, 100)
        XCTAssertEqual(network.count, 1001, "the failed connect to an allowed host is not a refusal")
    }

    /// `network = true` keeps meaning the host's network, and every launching command says so.
    func testTrueStillMeansHostAndWarns() throws {
        let (ws, env) = try workspace(agent: "network = true", hosts: "")
        let out = try ws.exec([python, "-c", "import os; print('proxy', os.environ.get('HTTPS_PROXY'))"], phase: "agent",
                              environment: env)
        XCTAssertEqual(out.status, 0, out.stderr)
        XCTAssertTrue(out.stdout.contains("proxy None"), out.stdout)
        XCTAssertTrue(out.stderr.contains("proctor: warning: \(ws.path("proctor.toml")):"), out.stderr)
        XCTAssertTrue(out.stderr.contains("agent.network: true means \"host\""), out.stderr)
        let sandbox = ws.audit().first { $0["kind"] as? String == "sandbox" }
        XCTAssertEqual((sandbox?["limits"] as? [String: String])?["netns"], "host host")
    }

    /// `network = "none"` and the default: no network namespace route at all, and no proxy variables.
    func testNoneHasNoProxy() throws {
        let listener = try LoopbackListener()
        let (ws, env) = try workspace(agent: "network = \"none\"", hosts: "")
        let script = """
            import os, socket
            print('proxy', os.environ.get('HTTPS_PROXY'))
            try: socket.create_connection(('127.0.0.1', 3128), timeout=2); print('CONNECTED')
            except OSError as e: print('refused', e)
            try: socket.create_connection(('127.0.0.1', \(listener.port)), timeout=2); print('CONNECTED')
            except OSError as e: print('refused', e)
            """
        let out = try ws.exec([python, "-c", script], phase: "agent", environment: env)
        XCTAssertTrue(out.stdout.contains("proxy None"), out.stdout + out.stderr)
        XCTAssertFalse(out.stdout.contains("CONNECTED"), out.stdout + out.stderr)
        XCTAssertEqual(listener.received(), [])
    }

    /// The experiment phase takes the same modes: with an allowlist it fetches from the listed host only.
    func testExperimentAllowlist() throws {
        let data = try LoopbackListener(), other = try LoopbackListener()
        let ws = try TestWorkspace(toml: TestWorkspace.defaultToml.replacingOccurrences(
            of: "seeds    = [42]", with: "seeds    = [42]\nnetwork  = \"allowlist\"\nallow_hosts = [\"data.test:\(data.port)\"]\nallow_private = true"))
        try ws.write(".hosts", "data.test 127.0.0.1\nother.test 127.0.0.1\n")
        var env = ProcessInfo.processInfo.environment
        env["PROCTOR_NET_HOSTS_FILE"] = ws.path(".hosts")
        let script = Self.client + """
            ask('data', 'GET http://data.test:\(data.port)/train.csv HTTP/1.1\\r\\nHost: data.test:\(data.port)\\r\\n\\r\\n')
            ask('other', 'GET http://other.test:\(other.port)/ HTTP/1.1\\r\\nHost: other.test:\(other.port)\\r\\n\\r\\n')
            """
        let out = try ws.exec([python, "-c", script], phase: "experiment", environment: env)
        XCTAssertTrue(out.stdout.contains("data HTTP/1.0 200 OK | reply-from-\(data.port)"), out.stdout + out.stderr)
        XCTAssertTrue(out.stdout.contains("other HTTP/1.1 403 Forbidden"), out.stdout + out.stderr)
        XCTAssertEqual(data.received().count, 1)
        XCTAssertEqual(other.received(), [])
        XCTAssertEqual(ws.audit().filter { $0["kind"] as? String == "network" && $0["phase"] as? String == "experiment" }.count, 1)
    }
}

/// A socket of `type` bound to 127.0.0.1 on a port the kernel picks: the descriptor and the port.
private func loopbackSocket(_ type: Int32) throws -> (Int32, Int) {
    let fd = socket(AF_INET, type, 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
    }
    guard fd >= 0, bound else {
        if fd >= 0 { close(fd) }
        throw POSIXError(.EADDRNOTAVAIL)
    }
    return (fd, Int(UInt16(bigEndian: addr.sin_port)))
}

/// A TCP listener on 127.0.0.1: each connection's first bytes are kept, then answered with
/// `HTTP/1.0 200 OK` and `reply-from-PORT`, and the connection closed.
final class LoopbackListener: @unchecked Sendable {
    let port: Int
    private let fd: Int32
    private let lock = NSLock()
    private var got: [String] = []
    private var stopped = false

    init() throws {
        (fd, port) = try loopbackSocket(Int32(SOCK_STREAM.rawValue))
        guard listen(fd, 16) == 0 else { throw POSIXError(.EADDRNOTAVAIL) }
        let fd = fd
        Thread.detachNewThread { [weak self] in
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 { return }
                var timeout = timeval(tv_sec: 5, tv_usec: 0)
                setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                var buffer = [UInt8](repeating: 0, count: 65536)
                let n = read(client, &buffer, buffer.count)
                guard let self else { close(client); return }
                self.lock.lock()
                self.got.append(String(decoding: buffer[0..<max(n, 0)], as: UTF8.self))
                self.lock.unlock()
                let reply = "HTTP/1.0 200 OK\r\n\r\nreply-from-\(self.port)"
                _ = reply.withCString { write(client, $0, strlen($0)) }
                close(client)
            }
        }
    }

    deinit { stop() }

    /// Closes the listening socket: its port refuses connections from now on.
    func stop() {
        lock.lock()
        defer { lock.unlock() }
        guard !stopped else { return }
        stopped = true
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }

    /// What each connection sent first, in order.
    func received() -> [String] {
        lock.lock()
        defer { lock.unlock() }
        return got
    }
}

/// A UDP socket on 127.0.0.1 that keeps whatever arrives.
final class LoopbackUDP {
    let port: Int
    private let fd: Int32

    init() throws {
        (fd, port) = try loopbackSocket(Int32(SOCK_DGRAM.rawValue))
    }

    deinit { close(fd) }

    func received() -> [String] {
        var result: [String] = []
        var buffer = [UInt8](repeating: 0, count: 2048)
        while true {
            let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if n < 0 { return result }
            result.append(String(decoding: buffer[0..<n], as: UTF8.self))
        }
    }
}
