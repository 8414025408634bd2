import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Both ends of a `SOCK_SEQPACKET` socketpair, close-on-exec: `local` stays, `remote` is sent or
/// inherited.
@frozen public struct SocketPair: ~Copyable, Sendable {
    public var local: OwnedDescriptor
    public var remote: OwnedDescriptor

    public init() throws {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw SandboxError.io(errno, "socketpair")
        }
        local = OwnedDescriptor(pair[0])
        remote = OwnedDescriptor(pair[1])
    }
}

/// One message of a Unix socket, as `SocketChannel.receive` got it.
public struct ChannelMessage: ~Copyable {
    public var bytes: [UInt8]
    /// The first descriptor of the first SCM_RIGHTS header (any others were closed).
    public var descriptor: OwnedDescriptor?
    /// The sender's pid as the kernel gave it (SCM_CREDENTIALS, on a socket with `SO_PASSCRED`),
    /// in this process's pid namespace.
    public var senderPID: pid_t?
}

/// Unix-socket messages with an optional descriptor passed along (SCM_RIGHTS): the session's
/// requests carry their own reply socket, so one helper writes and parses the control headers.
public enum SocketChannel {
    /// `struct ucred` and `SCM_CREDENTIALS`, which Glibc shows only under `_GNU_SOURCE`.
    struct Credentials {
        var pid: pid_t = 0
        var uid: uid_t = 0
        var gid: gid_t = 0
    }
    static let credentialsType: Int32 = 2

    /// Makes every message `receive` gets on `socket` carry its sender's pid (`SO_PASSCRED`).
    public static func passSenders(_ socket: Int32) throws {
        var on: Int32 = 1
        guard setsockopt(socket, SOL_SOCKET, SO_PASSCRED, &on, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw SandboxError.io(errno, "setsockopt SO_PASSCRED")
        }
    }

    /// The pid of the process that connected `socket` (`SO_PEERCRED`), in this pid namespace.
    public static func peer(_ socket: Int32) -> pid_t? {
        var peer = Credentials()
        var length = socklen_t(MemoryLayout<Credentials>.size)
        return getsockopt(socket, SOL_SOCKET, SO_PEERCRED, &peer, &length) == 0 && peer.pid > 0 ? peer.pid : nil
    }

    /// `SO_LINGER` of none on `fd`, if it is a socket: its last close resets at once instead of
    /// waiting (up to the linger time the sender set) for unsent data to go.
    public static func abortLinger(_ fd: Int32) {
        var abort = linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort, socklen_t(MemoryLayout<linger>.size))
    }

    /// Whether the other end of `fd` is still there: no hang-up, error or invalid descriptor now (a
    /// peer that only shut down its writing still waits for an answer).
    public static func peerIsThere(_ fd: Int32) -> Bool {
        var entry = pollfd(fd: fd, events: 0, revents: 0)
        var ready: Int32
        repeat { ready = poll(&entry, 1, 0) } while ready < 0 && errno == EINTR
        return ready == 0 || (ready == 1 && entry.revents & Int16(POLLHUP | POLLERR | POLLNVAL) == 0)
    }

    private static let headerSize = align(MemoryLayout<cmsghdr>.size)

    /// `CMSG_ALIGN`: control headers and their data start on `size_t` boundaries.
    private static func align(_ n: Int) -> Int {
        (n + MemoryLayout<Int>.size - 1) & ~(MemoryLayout<Int>.size - 1)
    }

    /// Sends `bytes` as one message, with `descriptor` attached when given. True when it all went.
    public static func send(_ socket: Int32, _ bytes: [UInt8], passing descriptor: Int32? = nil,
                            flags: Int32 = Int32(MSG_NOSIGNAL)) -> Bool {
        var body = bytes
        var control = [UInt8](repeating: 0, count: descriptor == nil ? 0 : headerSize + align(MemoryLayout<Int32>.size))
        return body.withUnsafeMutableBytes { bodyBytes in
            control.withUnsafeMutableBytes { controlBytes in
                var iov = iovec(iov_base: bodyBytes.baseAddress, iov_len: bodyBytes.count)
                return withUnsafeMutablePointer(to: &iov) { iovPointer in
                    var message = msghdr()
                    message.msg_iov = iovPointer
                    message.msg_iovlen = 1
                    if let descriptor, let base = controlBytes.baseAddress {
                        message.msg_control = base
                        message.msg_controllen = controlBytes.count
                        let header = base.assumingMemoryBound(to: cmsghdr.self)
                        header.pointee.cmsg_level = SOL_SOCKET
                        header.pointee.cmsg_type = Int32(SCM_RIGHTS)
                        header.pointee.cmsg_len = headerSize + MemoryLayout<Int32>.size
                        base.advanced(by: headerSize).storeBytes(of: descriptor, as: Int32.self)
                    }
                    var sent: Int
                    repeat { sent = sendmsg(socket, &message, flags) } while sent < 0 && errno == EINTR
                    return sent == bodyBytes.count
                }
            }
        }
    }

    /// Receives one message of at most `capacity` bytes; nil at end of file, for an empty message or
    /// on an error (errno says which). Passed descriptors arrive close-on-exec.
    public static func receive(_ socket: Int32, capacity: Int = 65536) -> ChannelMessage? {
        var buffer = [UInt8](repeating: 0, count: capacity)
        // Room for every descriptor one message can carry (SCM_MAX_FD, 253) and the credentials: one
        // the buffer had no room for was released by the kernel on this thread's way back from
        // recvmsg, and a TCP socket with unsent data and an hour's SO_LINGER held it there.
        var control = [UInt8](repeating: 0, count: 2 * headerSize + align(253 * MemoryLayout<Int32>.size)
                                  + align(MemoryLayout<Credentials>.size))
        var received = -1
        var descriptors: [Int32] = []
        var sender: pid_t?
        buffer.withUnsafeMutableBytes { bodyBytes in
            control.withUnsafeMutableBytes { controlBytes in
                var iov = iovec(iov_base: bodyBytes.baseAddress, iov_len: bodyBytes.count)
                withUnsafeMutablePointer(to: &iov) { iovPointer in
                    var message = msghdr()
                    message.msg_iov = iovPointer
                    message.msg_iovlen = 1
                    message.msg_control = controlBytes.baseAddress
                    message.msg_controllen = controlBytes.count
                    repeat { received = recvmsg(socket, &message, Int32(MSG_CMSG_CLOEXEC)) } while received < 0 && errno == EINTR
                    guard received >= 0, let base = controlBytes.baseAddress else { return }
                    var offset = 0
                    while offset + headerSize <= Int(message.msg_controllen) {
                        let header = base.advanced(by: offset).assumingMemoryBound(to: cmsghdr.self).pointee
                        let length = Int(header.cmsg_len)
                        guard length >= headerSize, offset + length <= Int(message.msg_controllen) else { break }
                        let data = base.advanced(by: offset + headerSize)
                        if header.cmsg_level == SOL_SOCKET && header.cmsg_type == Int32(SCM_RIGHTS) {
                            for k in 0..<(length - headerSize) / MemoryLayout<Int32>.size {
                                descriptors.append(data.loadUnaligned(fromByteOffset: k * 4, as: Int32.self))
                            }
                        } else if header.cmsg_level == SOL_SOCKET && header.cmsg_type == credentialsType,
                            length - headerSize >= MemoryLayout<Credentials>.size {
                            sender = data.loadUnaligned(as: Credentials.self).pid
                        }
                        offset += align(length)
                    }
                }
            }
        }
        // No close of a passed socket may wait: its linger is set to none (an abortive close) before
        // anything else. Exactly one descriptor is kept; a sender that attached more gets the rest closed.
        for fd in descriptors { abortLinger(fd) }
        let kept = descriptors.first
        for extra in descriptors.dropFirst() { close(extra) }
        // 0 is the peer's end of file on a SEQPACKET socket (an empty request means nothing either).
        guard received > 0 else {
            if let kept { close(kept) }
            return nil
        }
        return ChannelMessage(bytes: Array(buffer[0..<received]), descriptor: kept.map { OwnedDescriptor($0) },
                              senderPID: sender)
    }
}
