// libpcap for Swift (Debian's libpcap-dev). No logic here.
#include <pcap/pcap.h>
