import ArgumentParser
import WeftCore

// Addresses and networks are typed where they are parsed: ArgumentParser turns the text into an
// IPv4Address or IPv4Prefix once, and a bad value is refused with the flag's name.

extension IPv4Address: ExpressibleByArgument {
    public init?(argument: String) {
        self.init(argument)
    }
}

extension IPv4Prefix: ExpressibleByArgument {
    public init?(argument: String) {
        self.init(argument)
    }

    /// For `@Option(transform:)`: the network, or an error that says what is wrong with the text
    /// (host bits set, a bad length, not an address), which ArgumentParser puts after the flag.
    static func parseArgument(_ text: String) throws -> IPv4Prefix {
        if let prefix = IPv4Prefix(text) { return prefix }
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = IPv4Address(String(parts[0])) else {
            throw ValidationError("not an IPv4 network in CIDR form (e.g. 10.244.0.0/16)")
        }
        guard let length = Int(parts[1]), (0...32).contains(length), parts[1].allSatisfy(\.isASCII) else {
            throw ValidationError("the prefix length must be 0 to 32")
        }
        let network = IPv4Prefix(address: address, length: length)
        throw ValidationError("host bits are set: the network is \(network)")
    }
}
