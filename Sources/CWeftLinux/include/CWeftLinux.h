// CWeftLinux: what Swift cannot import from Glibc (TUN ioctls, mmsghdr, recvmmsg/sendmmsg,
// eventfd, rtnetlink constants). No logic lives here.
//
// Return convention for every function in this shim: the libc convention, -1 with errno set
// (as SwiftNIO's CNIOLinux). Swift reads errno immediately after the call.
//
// _GNU_SOURCE is defined by the target's cSettings and must never be defined in this header
// (a clean build then fails with "'__fds_bits' from module 'SwiftGlibc' is not present in
// definition of 'fd_set'", and an incremental rebuild hides it).
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>      /* before <linux/if_tun.h> */
#include <sys/socket.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <time.h>
#include <net/if.h>

// --- TUN -------------------------------------------------------------------------------------

extern const int CWeftLinux_IFF_TUN;
extern const int CWeftLinux_IFF_NO_PI;

/// TUNSETIFF alone on an fd already open on /dev/net/tun (so Swift can tell a failed open from
/// a failed ioctl in its error messages). Returns 0, or -1 with errno set; ENAMETOOLONG when
/// `name` has IFNAMSIZ bytes or more. `out_name` receives at most IFNAMSIZ bytes, NUL-terminated.
int CWeftLinux_tun_set_iff(int fd, const char *name, int flags, char *out_name);

extern const int CWeftLinux_IFNAMSIZ;

/// One descriptor per queue of a multiqueue TUN: every queue is opened with TUNSETIFF and this
/// flag, and the kernel spreads transmitted packets over the queues by flow.
extern const int CWeftLinux_IFF_MULTI_QUEUE;

// TUN offloads (virtio-net header in front of every packet).
extern const int CWeftLinux_IFF_VNET_HDR;
extern const unsigned int CWeftLinux_TUN_F_CSUM;
extern const unsigned int CWeftLinux_TUN_F_TSO4;
/// TUN_F_USO4/TUN_F_USO6 (Linux 6.2): the kernel defines them whether or not it supports them.
extern const unsigned int CWeftLinux_TUN_F_USO4;
extern const unsigned int CWeftLinux_TUN_F_USO6;
/// sizeof(struct virtio_net_hdr), the legacy header without num_buffers: 10.
extern const int CWeftLinux_sizeof_virtio_net_hdr;

/// ioctl(fd, TUNSETVNETHDRSZ, &size). Returns 0, or -1 with errno set.
int CWeftLinux_tun_set_vnet_hdr_size(int fd, int size);
/// ioctl(fd, TUNSETOFFLOAD, flags) (the argument is passed by value). Returns 0, or -1 with errno.
int CWeftLinux_tun_set_offload(int fd, unsigned int flags);

// --- UDP batches -----------------------------------------------------------------------------

/// Mirror of struct mmsghdr, which does not import into Swift even with _GNU_SOURCE (SR-6772).
/// Size and layout are checked with _Static_assert in CWeftLinux.c.
typedef struct {
    struct msghdr msg_hdr;
    unsigned int msg_len;
} CWeftLinux_mmsghdr;

int CWeftLinux_recvmmsg(int fd, CWeftLinux_mmsghdr *vec, unsigned int vlen, int flags,
                        struct timespec *timeout);
int CWeftLinux_sendmmsg(int fd, CWeftLinux_mmsghdr *vec, unsigned int vlen, int flags);

extern const int CWeftLinux_MSG_TRUNC;
extern const int CWeftLinux_MSG_WAITFORONE;
extern const int CWeftLinux_MSG_DONTWAIT;

// --- UDP segmentation offloads (GSO send, GRO receive) -------------------------------------

extern const int CWeftLinux_SOL_UDP;       /* 17 */
extern const int CWeftLinux_UDP_SEGMENT;   /* 103 */
extern const int CWeftLinux_UDP_GRO;       /* 104 */

/// The CMSG_* macros as functions.
struct cmsghdr *CWeftLinux_CMSG_FIRSTHDR(const struct msghdr *msg);
struct cmsghdr *CWeftLinux_CMSG_NXTHDR(struct msghdr *msg, struct cmsghdr *cmsg);
unsigned char *CWeftLinux_CMSG_DATA(struct cmsghdr *cmsg);
size_t CWeftLinux_CMSG_SPACE(size_t length);
size_t CWeftLinux_CMSG_LEN(size_t length);

// --- SO_REUSEPORT steering -----------------------------------------------------------------

extern const int CWeftLinux_SO_REUSEPORT;

/// Attaches to a UDP socket's SO_REUSEPORT group a classic BPF program that picks the group's
/// socket by the inner IPv4 addresses of a flannel datagram (bytes 12..<20 of the UDP payload):
/// index = ((src ^ dst) * 0x9E3779B1 >> 16) % `group_size`. Packets of one inner flow then always reach
/// the same socket; a datagram too short for the load selects socket 0. Returns 0, or -1 with
/// errno set (SO_ATTACH_REUSEPORT_CBPF, Linux >= 4.5).
int CWeftLinux_attach_reuseport_inner_hash(int fd, unsigned int group_size);

// --- TCP -------------------------------------------------------------------------------------

/// accept4(2) (_GNU_SOURCE-gated, so Glibc does not import it): the accepted socket gets
/// `flags` (SOCK_CLOEXEC) atomically.
int CWeftLinux_accept4(int fd, struct sockaddr *address, socklen_t *length, int flags);

// --- pipe ------------------------------------------------------------------------------------

// pipe2(fds, O_CLOEXEC): hidden from Swift behind _GNU_SOURCE.
int CWeftLinux_pipe_cloexec(int fds[2]);

// --- eventfd ---------------------------------------------------------------------------------

int CWeftLinux_eventfd(unsigned int initval, int flags);
extern const int CWeftLinux_EFD_NONBLOCK;
extern const int CWeftLinux_EFD_CLOEXEC;

// --- rtnetlink (constants from <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_link.h>,
// <linux/if_addr.h>; the messages themselves are encoded byte by byte in Swift) ---------------

extern const int CWeftLinux_AF_NETLINK;
extern const int CWeftLinux_NETLINK_ROUTE;
extern const int CWeftLinux_SOL_NETLINK;
extern const int CWeftLinux_NETLINK_CAP_ACK;

/// Fills a sockaddr_nl for the kernel (nl_pid 0, no groups) and calls bind/sendto as needed.
/// Provided because struct sockaddr_nl does not import into Swift.
int CWeftLinux_netlink_bind(int fd);
ssize_t CWeftLinux_netlink_send_to_kernel(int fd, const void *buf, size_t len);

extern const size_t CWeftLinux_sizeof_nlmsghdr;    /* 16 */
extern const size_t CWeftLinux_sizeof_nlmsgerr;    /* 20 */
extern const size_t CWeftLinux_sizeof_ifinfomsg;   /* 16 */
extern const size_t CWeftLinux_sizeof_ifaddrmsg;   /* 8 */
extern const size_t CWeftLinux_sizeof_rtmsg;       /* 12 */
extern const size_t CWeftLinux_sizeof_rtattr;      /* 4 */

// --- Network namespaces ----------------------------------------------------------------------

/// setns(fd, CLONE_NEWNET): moves the calling thread into the network namespace open at `fd`.
/// Returns 0, or -1 with errno set.
int CWeftLinux_setns_net(int fd);

// --- Interfaces ------------------------------------------------------------------------------

/// The MTU of interface `name` in the caller's network namespace (SIOCGIFMTU), or -1 with errno
/// set. Unlike /sys/class/net, right in any namespace, also one sysfs was not remounted for.
int CWeftLinux_interface_mtu(const char *name);
