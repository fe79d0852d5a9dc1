import WeftLinux

/// Where `weft run` serves its status for `weft status`, unless --status-socket says otherwise.
///
/// One path per network namespace, so nodes in namespaces on one host (the lab, the tests)
/// each have their own, and `weft status` run in a node's namespace finds that node without
/// being told where to look.
enum StatusSocket {
    static let directory = "/run/weft"

    static var defaultPath: String {
        "\(directory)/status-netns-\(NetworkNamespace.currentIdentifier().map(String.init) ?? "unknown").sock"
    }
}
