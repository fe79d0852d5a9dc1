// See include/CWeftLinux.h. Every function returns -1 with errno set on failure.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "CWeftLinux.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sched.h>
#include <netinet/udp.h>    /* SOL_UDP, UDP_SEGMENT, UDP_GRO; not <linux/udp.h> */
#include <linux/if_tun.h>
#include <linux/filter.h>
#include <linux/virtio_net.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

// --- TUN -------------------------------------------------------------------------------------

const int CWeftLinux_IFF_TUN = IFF_TUN;
const int CWeftLinux_IFF_NO_PI = IFF_NO_PI;
const int CWeftLinux_IFNAMSIZ = IFNAMSIZ;

const int CWeftLinux_IFF_VNET_HDR = IFF_VNET_HDR;
const int CWeftLinux_IFF_MULTI_QUEUE = IFF_MULTI_QUEUE;
const unsigned int CWeftLinux_TUN_F_CSUM = TUN_F_CSUM;
const unsigned int CWeftLinux_TUN_F_TSO4 = TUN_F_TSO4;
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif
const unsigned int CWeftLinux_TUN_F_USO4 = TUN_F_USO4;
const unsigned int CWeftLinux_TUN_F_USO6 = TUN_F_USO6;
const int CWeftLinux_sizeof_virtio_net_hdr = (int)sizeof(struct virtio_net_hdr);
_Static_assert(sizeof(struct virtio_net_hdr) == 10, "legacy virtio_net_hdr is 10 bytes");

int CWeftLinux_tun_set_vnet_hdr_size(int fd, int size) {
    return ioctl(fd, TUNSETVNETHDRSZ, &size);
}

int CWeftLinux_tun_set_offload(int fd, unsigned int flags) {
    return ioctl(fd, TUNSETOFFLOAD, (unsigned long)flags);
}

int CWeftLinux_tun_set_iff(int fd, const char *name, int flags, char *out_name) {
    struct ifreq ifr;
    size_t len = strlen(name);
    if (len >= IFNAMSIZ) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, name, len);
    ifr.ifr_flags = (short)flags;
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        return -1;
    }
    memcpy(out_name, ifr.ifr_name, IFNAMSIZ);
    out_name[IFNAMSIZ - 1] = '\0';
    return 0;
}

// --- UDP batches -----------------------------------------------------------------------------

_Static_assert(sizeof(CWeftLinux_mmsghdr) == sizeof(struct mmsghdr), "mmsghdr mirror size");
_Static_assert(offsetof(CWeftLinux_mmsghdr, msg_len) == offsetof(struct mmsghdr, msg_len),
               "mmsghdr mirror layout");

int CWeftLinux_recvmmsg(int fd, CWeftLinux_mmsghdr *vec, unsigned int vlen, int flags,
                        struct timespec *timeout) {
    return recvmmsg(fd, (struct mmsghdr *)vec, vlen, flags, timeout);
}

int CWeftLinux_sendmmsg(int fd, CWeftLinux_mmsghdr *vec, unsigned int vlen, int flags) {
    return sendmmsg(fd, (struct mmsghdr *)vec, vlen, flags);
}

const int CWeftLinux_MSG_TRUNC = MSG_TRUNC;
const int CWeftLinux_MSG_WAITFORONE = MSG_WAITFORONE;
const int CWeftLinux_MSG_DONTWAIT = MSG_DONTWAIT;

// --- UDP segmentation offloads ---------------------------------------------------------------

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif
const int CWeftLinux_SOL_UDP = SOL_UDP;
const int CWeftLinux_UDP_SEGMENT = UDP_SEGMENT;
const int CWeftLinux_UDP_GRO = UDP_GRO;
_Static_assert(SOL_UDP == 17 && UDP_SEGMENT == 103 && UDP_GRO == 104, "UDP offload constants");

struct cmsghdr *CWeftLinux_CMSG_FIRSTHDR(const struct msghdr *msg) {
    return CMSG_FIRSTHDR(msg);
}

struct cmsghdr *CWeftLinux_CMSG_NXTHDR(struct msghdr *msg, struct cmsghdr *cmsg) {
    return CMSG_NXTHDR(msg, cmsg);
}

unsigned char *CWeftLinux_CMSG_DATA(struct cmsghdr *cmsg) {
    return CMSG_DATA(cmsg);
}

size_t CWeftLinux_CMSG_SPACE(size_t length) {
    return CMSG_SPACE(length);
}

size_t CWeftLinux_CMSG_LEN(size_t length) {
    return CMSG_LEN(length);
}

// --- TCP -------------------------------------------------------------------------------------

int CWeftLinux_accept4(int fd, struct sockaddr *address, socklen_t *length, int flags) {
    return accept4(fd, address, length, flags);
}

// --- pipe ------------------------------------------------------------------------------------

const int CWeftLinux_SO_REUSEPORT = SO_REUSEPORT;

#ifndef SO_ATTACH_REUSEPORT_CBPF
#define SO_ATTACH_REUSEPORT_CBPF 51
#endif

int CWeftLinux_attach_reuseport_inner_hash(int fd, unsigned int group_size) {
    if (group_size == 0) {
        errno = EINVAL;
        return -1;
    }
    // For a UDP socket's reuseport program the kernel points the packet at the UDP payload.
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 12),          // A = inner source address
        BPF_STMT(BPF_MISC | BPF_TAX, 0),                 // X = A
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 16),          // A = inner destination address
        BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),          // A ^= X: both directions of a flow agree
        BPF_STMT(BPF_ALU | BPF_MUL | BPF_K, 0x9E3779B1), // spread the few bits that differ
        BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 16),
        BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, group_size),
        BPF_STMT(BPF_RET | BPF_A, 0),
    };
    struct sock_fprog program = { .len = sizeof(code) / sizeof(code[0]), .filter = code };
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &program, sizeof(program));
}

int CWeftLinux_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC);
}

// --- eventfd ---------------------------------------------------------------------------------

int CWeftLinux_eventfd(unsigned int initval, int flags) {
    return eventfd(initval, flags);
}

const int CWeftLinux_EFD_NONBLOCK = EFD_NONBLOCK;
const int CWeftLinux_EFD_CLOEXEC = EFD_CLOEXEC;

// --- rtnetlink -------------------------------------------------------------------------------

const int CWeftLinux_AF_NETLINK = AF_NETLINK;
const int CWeftLinux_NETLINK_ROUTE = NETLINK_ROUTE;
const int CWeftLinux_SOL_NETLINK = SOL_NETLINK;
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif
const int CWeftLinux_NETLINK_CAP_ACK = NETLINK_CAP_ACK;

int CWeftLinux_netlink_bind(int fd) {
    struct sockaddr_nl sa;
    memset(&sa, 0, sizeof(sa));
    sa.nl_family = AF_NETLINK;
    return bind(fd, (struct sockaddr *)&sa, sizeof(sa));
}

ssize_t CWeftLinux_netlink_send_to_kernel(int fd, const void *buf, size_t len) {
    struct sockaddr_nl sa;
    memset(&sa, 0, sizeof(sa));
    sa.nl_family = AF_NETLINK;
    return sendto(fd, buf, len, 0, (struct sockaddr *)&sa, sizeof(sa));
}

const size_t CWeftLinux_sizeof_nlmsghdr = sizeof(struct nlmsghdr);
const size_t CWeftLinux_sizeof_nlmsgerr = sizeof(struct nlmsgerr);
const size_t CWeftLinux_sizeof_ifinfomsg = sizeof(struct ifinfomsg);
const size_t CWeftLinux_sizeof_ifaddrmsg = sizeof(struct ifaddrmsg);
const size_t CWeftLinux_sizeof_rtmsg = sizeof(struct rtmsg);
const size_t CWeftLinux_sizeof_rtattr = sizeof(struct rtattr);

_Static_assert(sizeof(struct nlmsghdr) == 16, "nlmsghdr");
_Static_assert(sizeof(struct nlmsgerr) == 20, "nlmsgerr");
_Static_assert(sizeof(struct ifinfomsg) == 16, "ifinfomsg");
_Static_assert(sizeof(struct ifaddrmsg) == 8, "ifaddrmsg");
_Static_assert(sizeof(struct rtmsg) == 12, "rtmsg");
_Static_assert(sizeof(struct rtattr) == 4, "rtattr");
_Static_assert(RTM_NEWLINK == 16 && RTM_NEWADDR == 20 && RTM_NEWROUTE == 24 && RTM_DELROUTE == 25, "rtm");
_Static_assert(IFLA_MTU == 4 && IFA_ADDRESS == 1 && IFA_LOCAL == 2 && RTA_DST == 1 && RTA_OIF == 4, "attrs");
_Static_assert(NLM_F_REQUEST == 1 && NLM_F_ACK == 4 && NLM_F_EXCL == 0x200 && NLM_F_CREATE == 0x400, "flags");
_Static_assert(RT_TABLE_MAIN == 254 && RTPROT_BOOT == 3 && RT_SCOPE_UNIVERSE == 0 && RTN_UNICAST == 1, "rt");
_Static_assert(NLMSG_ERROR == 2 && NLMSG_DONE == 3, "nlmsg types");

int CWeftLinux_setns_net(int fd) {
    return setns(fd, CLONE_NEWNET);
}

int CWeftLinux_interface_mtu(const char *name) {
    if (strlen(name) >= IFNAMSIZ) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct ifreq request;
    memset(&request, 0, sizeof(request));
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    int result = ioctl(fd, SIOCGIFMTU, &request);
    int saved = errno;
    close(fd);
    if (result < 0) {
        errno = saved;
        return -1;
    }
    return request.ifr_mtu;
}
