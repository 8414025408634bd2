#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

import ProctorSandbox

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Talking to the server: one request with retries (429, 5xx and failed connections, with
/// exponential back-off and jitter, honouring `Retry-After`) within the proposal's time budget.
extension HTTPAgent {
    func complete(system: String, user: String, key: String?) throws(AgentError) -> Reply {
        let url = config.endpointURL
        let body = try requestBody(system: system, user: user)
        let headers: [(name: String, value: String)] = [
            ("Content-Type", "application/json"), ("Accept", "application/json"),
        ] + wire.headers(key: key)

        let clock = ContinuousClock()
        let deadline = clock.now + .milliseconds(Int64(max(config.timeoutSeconds, 0.001) * 1000))
        let attempts = max(config.maxRetries, 0) + 1
        var generator = SystemRandomNumberGenerator()
        var lastProblem = ""
        for attempt in 0..<attempts {
            let remaining = seconds(deadline - clock.now)
            guard remaining > 0 else { throw .failed(reason: "no answer from \(url) within \(config.timeoutSeconds)s") }
            let client = HTTPClient(
                timeoutSeconds: remaining, connectTimeoutSeconds: min(config.connectTimeoutSeconds, remaining),
                maxBodyBytes: config.maxResponseBytes)
            let isLast = attempt == attempts - 1
            let wait: Double
            let problem: String
            do {
                let response = try client.post(url: url, headers: headers, body: body)
                switch response.status {
                case 200..<300:
                    return try parseReply(response.body)
                case 401, 403:
                    let variable = config.apiKeyEnv.map { "$\($0)" } ?? "the api_key_env setting"
                    throw AgentError.failed(
                        reason: "authentication failed: check \(variable) (HTTP \(response.status) from \(url))")
                case 404:
                    throw AgentError.failed(reason: "model or endpoint not found: \(url) (model \"\(config.model)\")")
                case 429, 500..<600:
                    problem = "HTTP \(response.status) from \(url)\(serverMessage(response.body))"
                    wait = retryAfter(response.headers["retry-after"]) ?? backoff(attempt, &generator)
                case 300..<400:
                    let location = response.headers["location"].map { " to \($0)" } ?? ""
                    throw AgentError.failed(
                        reason:
                            "HTTP \(response.status) from \(url): redirect\(location) not followed; set base_url to the final address"
                    )
                default:
                    throw AgentError.failed(
                        reason: "HTTP \(response.status) from \(url)\(serverMessage(response.body))")
                }
            } catch let error as HTTPClientError {
                switch error.kind {
                case .timeout:
                    throw AgentError.failed(reason: "no answer from \(url) within \(config.timeoutSeconds)s")
                case .interrupted:
                    throw AgentError.failed(reason: "interrupted while waiting for \(url)")
                case .connection:
                    problem = error.message
                    wait = backoff(attempt, &generator)
                default:
                    throw AgentError.failed(reason: error.message)
                }
            } catch let error as AgentError {
                throw error
            } catch {
                throw AgentError.failed(reason: "\(error)")
            }
            lastProblem = problem
            if isLast { break }
            if seconds(deadline - clock.now) <= wait {
                throw .failed(reason: "\(problem); no time left to retry within \(config.timeoutSeconds)s")
            }
            sleep(seconds: wait)
            if StopSignal.received { throw .failed(reason: "interrupted while waiting to retry \(url)") }
        }
        throw .failed(reason: "\(lastProblem) after \(attempts) attempt\(attempts == 1 ? "" : "s")")
    }

    func cost(_ usage: AgentUsage) -> AgentUsage {
        guard config.pricePerMTokIn != nil || config.pricePerMTokOut != nil else { return usage }
        var priced = usage
        priced.costUSD =
            (Double(usage.promptTokens) * (config.pricePerMTokIn ?? 0)
                + Double(usage.completionTokens) * (config.pricePerMTokOut ?? 0)) / 1_000_000
        return priced
    }


    /// `Retry-After` in seconds (an HTTP date is ignored), capped at `maxRetryDelaySeconds`.
    func retryAfter(_ value: String?) -> Double? {
        guard let value, let seconds = Double(value.trimmed()), seconds.isFinite, seconds >= 0 else { return nil }
        return min(seconds, config.maxRetryDelaySeconds)
    }

    func backoff(_ attempt: Int, _ generator: inout SystemRandomNumberGenerator) -> Double {
        let exponential = config.retryBaseDelaySeconds * Double(1 << min(attempt, 20))
        // "Equal jitter": half fixed, half random, so clients that failed together spread out.
        let jittered = exponential * (0.5 + 0.5 * Double.random(in: 0..<1, using: &generator))
        return min(jittered, config.maxRetryDelaySeconds)
    }

    func seconds(_ duration: Duration) -> Double {
        let (whole, attoseconds) = duration.components
        return Double(whole) + Double(attoseconds) / 1e18
    }

    /// The back-off before a retry, cut short by Ctrl-C or SIGTERM (a `Retry-After` of minutes).
    func sleep(seconds: Double) {
        var left = seconds
        while left > 0 && !StopSignal.received {
            let step = min(left, 0.1)
            var request = timespec(tv_sec: Int(step), tv_nsec: Int((step - Double(Int(step))) * 1e9))
            var remaining = timespec()
            while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
            left -= step
        }
    }
}
