//! Known default values of RouterOS properties, and dropping them from a configuration so a
//! `verbose` export (every property, defaults included) compares with a compact one (only
//! values that differ from the default) without spurious differences where the defaults are
//! known. Owns the table and the drop rules; depends on the model and the parser only.
//!
//! # Where the table comes from
//!
//! Every entry is derived from the export corpus (`shared/routeros-exports`, its
//! `MANIFEST.md`): the verbose exports 04 (6.49.7, hAP) and 06 (6.49.2, LHG R) for
//! RouterOS 6 and 15 (7.17.2, CHR) for RouterOS 7, against the compact exports of the same
//! major version (01 02 03 05 07 for v6; 08 09 10 11 12 13 14 16 for v7). Compact exports
//! print only values that differ from the default (ROUTEROS-NOTES §6), so:
//!
//! * **left out by compact**: every row of a menu (`add` rows, or `set` rows: singleton
//!   settings and built-in items, kept apart) in the verbose exports of a major version
//!   has `key=value` (or the `!key` "not set" marker), the same on all of them; rows of the
//!   same menu and kind in compact exports of that version leave the property out; and no
//!   compact export of that version writes `key=value` there (a compact export writing it
//!   proves it is not the default: v6 compact files print `disabled=no` on DHCP servers,
//!   so that is not a v6 default). Accepted when two verbose files agree (v6: 04 and 06),
//!   or one file agrees over at least two rows, or a single row is corroborated by the
//!   same value in the other major version's verbose files (itself not contradicted by
//!   that version's compact files).
//! * **menu in no compact export**: a `set` menu that every device has (singleton
//!   settings, `[ find default=yes ]` items) but no compact export of that version
//!   mentions, so its values were left as they were; accepted for v6 when 04 and 06 agree,
//!   for v7 (one verbose file) only where the value is also the v6 one.
//!
//! Properties whose value belongs to the device or its owner are never entries, however
//! the files agree: names (except built-in `name=default`), comments, addresses and
//! interfaces, MAC addresses, hardware facts (`l2mtu`, `speed`, `advertise`, radio
//! chains, `band`, `country`), masked secrets, and settings the factory default
//! configuration changes on wireless (`mode`, `distance`, `channel-width`, ...).
//!
//! The table below is written in export syntax (one text per major version, read with
//! this crate's parser at first use); the `#` line above each group names the corpus files
//! it comes from and how many rows agreed. 585 entries for v6 and 395 for v7; the test
//! `tests/corpus.rs` checks each entry against the corpus again.
//!
//! # Row rules
//!
//! Besides the table, three rules that hold on every row of the verbose files:
//! * `set` on an item selected by its name (`set [ find default-name=ether1 ]`,
//!   `set [ find name=all ]`, `set ftp`): `name` equal to that name is dropped (verbose
//!   writes it, compact never does);
//! * `orig-mac-address` is dropped: the factory MAC, written by verbose exports on every
//!   interface (04, 06, 15) and by no compact export;
//! * `mac-address` equal to the row's `orig-mac-address` is dropped (the default MAC is
//!   the factory one).
//!
//! Dropping is conservative: a value that is not known to be the default stays, so a
//! verbose export still differs from its compact twin in those values (hardware facts,
//! properties of menus the corpus never shows in both forms). A `set` left without
//! properties is dropped (compact exports do not write untouched built-in items), and so
//! is a menu left without commands.

use std::collections::HashMap;
use std::sync::LazyLock;

use crate::model::{Attr, Config, FindTerm, MenuPath, Selector, Stmt};
use crate::parse::parse_export;

/// Known RouterOS 6 defaults (see the module docs for the method).
const DEFAULTS_V6: &str = r#"
/caps-man aaa
# verbose 04 06 (2 rows); menu in no v6 compact export
set called-format=mac:ssid interim-update=disabled mac-caching=disabled \
    mac-format=XX:XX:XX:XX:XX:XX mac-mode=as-username
/caps-man manager
# verbose 04 06 (2 rows); left out by compact 01 02 03
set ca-certificate=none certificate=none package-path="" require-peer-certificate=no \
    upgrade-policy=none
/caps-man manager interface
# verbose 04 06 (2 rows); menu in no v6 compact export
set disabled=no forbid=no
/certificate settings
# verbose 04 06 (2 rows); menu in no v6 compact export; all also v7 verbose values
set crl-download=no crl-store=ram crl-use=no
/interface bridge port
# verbose 04 (5 rows); left out by compact 01 02 03 05 07
add auto-isolate=no bpdu-guard=no broadcast-flood=yes disabled=no edge=auto fast-leave=no \
    frame-types=admit-all horizon=none ingress-filtering=no internal-path-cost=10 \
    learn=auto multicast-router=temporary-query path-cost=10 point-to-point=auto \
    priority=0x80 pvid=1 restricted-role=no restricted-tcn=no tag-stacking=no trusted=no \
    unknown-multicast-flood=yes unknown-unicast-flood=yes
/interface bridge port-controller
# verbose 04 06 (2 rows); menu in no v6 compact export; all also v7 verbose values
set bridge=none cascade-ports="" switch=none
/interface bridge port-extender
# verbose 04 06 (2 rows); menu in no v6 compact export; all also v7 verbose values
set control-ports="" excluded-ports="" switch=none
/interface bridge settings
# verbose 04 06 (2 rows); menu in no v6 compact export; all also v7 verbose values
set allow-fast-path=yes use-ip-firewall=no use-ip-firewall-for-pppoe=no \
    use-ip-firewall-for-vlan=no
/interface detect-internet
# verbose 04 06 (2 rows); left out by compact 01 02; all also v7 verbose values
set internet-interface-list=none lan-interface-list=none wan-interface-list=none
/interface ethernet
# verbose 04 06 (6 rows); left out by compact 01 02 03 05 07; 8 of 12 also v7 verbose values
set arp=enabled arp-timeout=auto auto-negotiation=yes bandwidth=unlimited/unlimited \
    disabled=no full-duplex=yes loop-protect=default loop-protect-disable-time=5m \
    loop-protect-send-interval=5s mtu=1500 rx-flow-control=off tx-flow-control=off
/interface ethernet switch
# verbose 04 06 (2 rows); menu in no v6 compact export
set cpu-flow-control=yes mirror-source=none mirror-target=none
/interface ethernet switch port
# verbose 04 06 (8 rows); menu in no v6 compact export
set default-vlan-id=0 vlan-header=leave-as-is vlan-mode=disabled
/interface l2tp-server server
# verbose 04 06 (2 rows); left out by compact 01 02; all also v7 verbose values
set allow-fast-path=no authentication=pap,chap,mschap1,mschap2 caller-id-type=ip-address \
    default-profile=default-encryption enabled=no ipsec-secret="" keepalive-timeout=30 \
    max-mru=1450 max-mtu=1450 max-sessions=unlimited mrru=disabled one-session-per-host=no
/interface list
# verbose 04 06 (7 rows); left out by compact 01 02; all also v7 verbose values
add include=""
# verbose 04 06 (8 rows); menu in no v6 compact export; all also v7 verbose values
set exclude="" include=""
/interface lte apn
# verbose 04 06 (2 rows); menu in no v6 compact export; all also v7 verbose values
set add-default-route=yes default-route-distance=2 name=default use-peer-dns=yes
/interface ovpn-server server
# verbose 04 06 (2 rows); menu in no v6 compact export
set auth=sha1,md5 cipher=blowfish128,aes128 default-profile=default enabled=no \
    keepalive-timeout=60 max-mtu=1500 netmask=24 port=1194 require-client-certificate=no
/interface pptp-server server
# verbose 04 06 (2 rows); left out by compact 01 02; all also v7 verbose values
set authentication=mschap1,mschap2 default-profile=default-encryption enabled=no \
    keepalive-timeout=30 max-mru=1450 max-mtu=1450 mrru=disabled
/interface sstp-server server
# verbose 04 06 (2 rows); left out by compact 02; 10 of 11 also v7 verbose values
set authentication=pap,chap,mschap1,mschap2 certificate=none force-aes=no \
    keepalive-timeout=60 max-mru=1500 max-mtu=1500 mrru=disabled pfs=no port=443 \
    tls-version=any verify-client-certificate=no
/interface vlan
# verbose 04 (3 rows); left out by compact 01 07
add arp=enabled arp-timeout=auto disabled=no loop-protect=default \
    loop-protect-disable-time=5m loop-protect-send-interval=5s mtu=1500 use-service-tag=no
/interface wireless align
# verbose 04 06 (2 rows); menu in no v6 compact export
set active-mode=yes audio-max=-20 audio-min=-100 audio-monitor=00:00:00:00:00:00 \
    filter-mac=00:00:00:00:00:00 frame-size=300 frames-per-second=25 receive-all=no \
    ssid-all=no
/interface wireless cap
# verbose 04 06 (2 rows); left out by compact 03
set bridge=none caps-man-certificate-common-names="" caps-man-names="" certificate=none \
    lock-to-caps-man=no static-virtual=no
/interface wireless security-profiles
# verbose 04 06 (2 rows); left out by compact 01 02 03 05 07
set disable-pmkid=no eap-methods=passthrough group-ciphers=aes-ccm group-key-update=5m \
    interim-update=0s management-protection=disabled management-protection-key="" \
    mschapv2-password="" mschapv2-username="" name=default radius-called-format=mac:ssid \
    radius-eap-accounting=no radius-mac-accounting=no radius-mac-authentication=no \
    radius-mac-caching=disabled radius-mac-format=XX:XX:XX:XX:XX:XX \
    radius-mac-mode=as-username static-algo-0=none static-algo-1=none static-algo-2=none \
    static-algo-3=none static-key-0="" static-key-1="" static-key-2="" static-key-3="" \
    static-sta-private-algo=none static-sta-private-key="" static-transmit-key=key-0 \
    tls-certificate=none tls-mode=no-certificates unicast-ciphers=aes-ccm
/interface wireless sniffer
# verbose 04 06 (2 rows); menu in no v6 compact export
set channel-time=200ms file-limit=10 file-name="" memory-limit=10 multiple-channels=no \
    only-headers=no receive-errors=no streaming-enabled=no streaming-max-rate=0 \
    streaming-server=0.0.0.0
/interface wireless snooper
# verbose 04 06 (2 rows); menu in no v6 compact export
set channel-time=200ms multiple-channels=yes receive-errors=no
/ip accounting
# verbose 04 06 (2 rows); menu in no v6 compact export
set account-local-traffic=no enabled=no threshold=256
/ip accounting web-access
# verbose 04 06 (2 rows); menu in no v6 compact export
set accessible-via-web=no
/ip address
# verbose 04 06 (4 rows); left out by compact 01 02 03 05 07; all also v7 verbose values
add disabled=no
/ip cloud
# verbose 04 06 (2 rows); left out by compact 01 02; all also v7 verbose values
set ddns-update-interval=none update-time=yes
/ip cloud advanced
# verbose 04 06 (2 rows); menu in no v6 compact export; all also v7 verbose values
set use-local-address=no
/ip dhcp-client
# verbose 04 (1 row); left out by compact 01 02 05; all also v7 verbose values
add add-default-route=yes default-route-distance=1 use-peer-dns=yes use-peer-ntp=yes
/ip dhcp-server
# verbose 04 06 (2 rows); left out by compact 01 02 03 05; 2 of 3 also v7 verbose values
add authoritative=yes lease-script="" use-radius=no
/ip dhcp-server config
# verbose 04 06 (2 rows); menu in no v6 compact export; all also v7 verbose values
set accounting=yes interim-update=0s store-leases-disk=5m
/ip dhcp-server network
# verbose 04 06 (2 rows); left out by compact 01 02 03 05; all also v7 verbose values
add caps-manager="" dhcp-option="" ntp-server="" wins-server=""
/ip dns
# verbose 04 06 (2 rows); left out by compact 01 02 03 05; all also v7 verbose values
set cache-size=2048KiB max-concurrent-queries=100 max-concurrent-tcp-sessions=20 \
    max-udp-packet-size=4096 query-server-timeout=2s query-total-timeout=10s \
    use-doh-server=""
/ip dns static
# verbose 04 06 (2 rows); left out by compact 01 05
add disabled=no ttl=1d
/ip firewall connection tracking
# verbose 04 06 (2 rows); menu in no v6 compact export; 14 of 15 also v7 verbose values
set generic-timeout=10m icmp-timeout=10s loose-tcp-tracking=yes tcp-close-timeout=10s \
    tcp-close-wait-timeout=10s tcp-established-timeout=1d tcp-fin-wait-timeout=10s \
    tcp-last-ack-timeout=10s tcp-max-retrans-timeout=5m tcp-syn-received-timeout=5s \
    tcp-syn-sent-timeout=5s tcp-time-wait-timeout=10s tcp-unacked-timeout=5m \
    udp-stream-timeout=3m udp-timeout=10s
/ip hotspot profile
# verbose 04 06 (2 rows); left out by compact 01 03; 10 of 11 also v7 verbose values
set dns-name="" hotspot-address=0.0.0.0 html-directory-override="" http-cookie-lifetime=3d \
    http-proxy=0.0.0.0:0 login-by=cookie,http-chap name=default rate-limit="" \
    smtp-server=0.0.0.0 split-user-domain=no use-radius=no
/ip hotspot service-port
# verbose 04 06 (2 rows); menu in no v6 compact export; all also v7 verbose values
set disabled=no ports=21
/ip hotspot user
# verbose 04 06 (2 rows); menu in no v6 compact export; all also v7 verbose values
set disabled=no
/ip hotspot user profile
# verbose 04 06 (2 rows); left out by compact 01; all also v7 verbose values
set add-mac-cookie=yes address-list="" idle-timeout=none !insert-queue-before \
    keepalive-timeout=2m !parent-queue !queue-type status-autorefresh=1m \
    transparent-proxy=no
/ip ipsec mode-config
# verbose 04 06 (2 rows); menu in no v6 compact export; all also v7 verbose values
set responder=no use-responder-dns=exclusively
/ip ipsec policy
# verbose 04 06 (2 rows); menu in no v6 compact export; all also v7 verbose values
set disabled=no dst-address=::/0 group=default proposal=default protocol=all \
    src-address=::/0 template=yes
/ip ipsec policy group
# verbose 04 06 (2 rows); menu in no v6 compact export; all also v7 verbose values
set name=default
/ip ipsec profile
# verbose 04 06 (2 rows); menu in no v6 compact export; 7 of 9 also v7 verbose values
set dh-group=modp2048,modp1024 dpd-interval=2m dpd-maximum-failures=5 \
    enc-algorithm=aes-128,3des hash-algorithm=sha1 lifetime=1d name=default \
    nat-traversal=yes proposal-check=obey
/ip ipsec proposal
# verbose 04 06 (2 rows); left out by compact 05; all also v7 verbose values
set auth-algorithms=sha1 disabled=no lifetime=30m name=default pfs-group=modp1024
/ip ipsec settings
# verbose 04 06 (2 rows); menu in no v6 compact export; all also v7 verbose values
set accounting=yes interim-update=0s xauth-use-radius=no
/ip neighbor discovery-settings
# verbose 04 06 (2 rows); left out by compact 01 03; all also v7 verbose values
set lldp-med-net-policy-vlan=disabled protocol=cdp,lldp,mndp
/ip proxy
# verbose 04 06 (2 rows); left out by compact 01 05; all also v7 verbose values
set always-from-cache=no anonymous=no cache-administrator=webmaster cache-hit-dscp=4 \
    cache-on-disk=no cache-path=web-proxy enabled=no max-cache-object-size=2048KiB \
    max-cache-size=unlimited max-client-connections=600 max-fresh-time=3d \
    max-server-connections=600 parent-proxy=:: parent-proxy-port=0 port=8080 \
    serialize-connections=no src-address=::
/ip route
# verbose 04 (3 rows); left out by compact 01 02 07
add !bgp-as-path !bgp-atomic-aggregate !bgp-communities !bgp-local-pref !bgp-med \
    !bgp-origin !bgp-prepend !check-gateway disabled=no !route-tag !routing-mark scope=30 \
    target-scope=10
/ip settings
# verbose 04 06 (2 rows); menu in no v6 compact export; 11 of 13 also v7 verbose values
set accept-redirects=no accept-source-route=no allow-fast-path=yes arp-timeout=30s \
    icmp-rate-limit=10 icmp-rate-mask=0x1818 ip-forward=yes max-neighbor-entries=8192 \
    route-cache=yes rp-filter=no secure-redirects=yes send-redirects=yes tcp-syncookies=no
/ip smb
# verbose 04 06 (2 rows); menu in no v6 compact export; 2 of 4 also v7 verbose values
set allow-guests=yes domain=MSHOME enabled=no interfaces=all
/ip smb shares
# verbose 04 06 (2 rows); menu in no v6 compact export
set disabled=no max-sessions=10
/ip smb users
# verbose 04 06 (2 rows); menu in no v6 compact export; all also v7 verbose values
set disabled=no password="" read-only=yes
/ip socks
# verbose 04 06 (2 rows); menu in no v6 compact export; all also v7 verbose values
set auth-method=none connection-idle-timeout=2m enabled=no max-connections=200 version=4
/ip ssh
# verbose 04 06 (2 rows); left out by compact 02 03; all also v7 verbose values
set always-allow-password-login=no host-key-size=2048 strong-crypto=no
/ip tftp settings
# verbose 04 06 (2 rows); menu in no v6 compact export; all also v7 verbose values
set max-block-size=4096
/ip traffic-flow
# verbose 04 06 (2 rows); left out by compact 02; all also v7 verbose values
set active-flow-timeout=30m enabled=no inactive-flow-timeout=15s packet-sampling=no \
    sampling-interval=0 sampling-space=0
/ip traffic-flow ipfix
# verbose 04 06 (2 rows); menu in no v6 compact export; all also v7 verbose values
set bytes=yes dst-address=yes dst-address-mask=yes dst-mac-address=yes dst-port=yes \
    first-forwarded=yes icmp-code=yes icmp-type=yes igmp-type=yes in-interface=yes \
    ip-header-length=yes ip-total-length=yes ipv6-flow-label=yes is-multicast=yes \
    last-forwarded=yes nat-dst-address=yes nat-dst-port=yes nat-events=no \
    nat-src-address=yes nat-src-port=yes out-interface=yes packets=yes protocol=yes \
    src-address=yes src-address-mask=yes src-mac-address=yes src-port=yes \
    sys-init-time=yes tcp-ack-num=yes tcp-flags=yes tcp-seq-num=yes tcp-window-size=yes \
    tos=yes ttl=yes udp-length=yes
/ip upnp
# verbose 04 06 (2 rows); left out by compact 05; all also v7 verbose values
set enabled=no show-dummy-rule=yes
/mpls
# verbose 04 06 (2 rows); menu in no v6 compact export
set allow-fast-path=yes dynamic-label-range=16-1048575 propagate-ttl=yes
/mpls interface
# verbose 04 06 (2 rows); menu in no v6 compact export
set disabled=no mpls-mtu=1508
/mpls ldp
# verbose 04 06 (2 rows); left out by compact 07
set distribute-for-default-route=no hop-limit=255 loop-detect=no path-vector-limit=255 \
    use-explicit-null=no
/port firmware
# verbose 04 06 (2 rows); menu in no v6 compact export
set directory=firmware ignore-directip-modem=no
/ppp aaa
# verbose 04 06 (2 rows); menu in no v6 compact export; all also v7 verbose values
set accounting=yes interim-update=0s use-circuit-id-in-nas-port-id=no use-radius=no
/ppp profile
# verbose 04 06 (4 rows); left out by compact 02; all also v7 verbose values
set address-list="" !bridge !bridge-horizon bridge-learning=default !bridge-path-cost \
    !bridge-port-priority change-tcp-mss=yes !idle-timeout !incoming-filter \
    !insert-queue-before !interface-list on-down="" on-up="" only-one=default \
    !outgoing-filter !parent-queue !queue-type !rate-limit !session-timeout \
    use-compression=default use-mpls=default use-upnp=default !wins-server
/radius incoming
# verbose 04 06 (2 rows); menu in no v6 compact export; all also v7 verbose values
set accept=no port=3799
/routing bfd interface
# verbose 04 06 (2 rows); menu in no v6 compact export
set disabled=no interval=0.2s min-rx=0.2s multiplier=5
/routing bgp instance
# verbose 04 06 (2 rows); left out by compact 07
set client-to-client-reflection=yes !cluster-id !confederation disabled=no \
    ignore-as-path-len=no name=default out-filter="" redistribute-connected=no \
    redistribute-ospf=no redistribute-other-bgp=no redistribute-rip=no \
    redistribute-static=no routing-table=""
/routing mme
# verbose 04 06 (2 rows); menu in no v6 compact export
set bidirectional-timeout=2 gateway-class=none gateway-keepalive=1m \
    gateway-selection=no-gateway origination-interval=5s preferred-gateway=0.0.0.0 \
    timeout=1m ttl=50
/routing ospf area
# verbose 04 06 (2 rows); menu in no v6 compact export
set area-id=0.0.0.0 disabled=no instance=default type=default
/routing ospf instance
# verbose 04 06 (2 rows); left out by compact 07
set disabled=no distribute-default=never !domain-id !domain-tag in-filter=ospf-in \
    metric-bgp=auto metric-connected=20 metric-default=1 metric-other-ospf=auto \
    metric-rip=20 metric-static=20 name=default out-filter=ospf-out redistribute-bgp=no \
    redistribute-connected=no redistribute-other-ospf=no redistribute-rip=no \
    redistribute-static=no !routing-table !use-dn
/routing rip
# verbose 04 06 (2 rows); menu in no v6 compact export
set distribute-default=never garbage-timer=2m metric-bgp=1 metric-connected=1 \
    metric-default=1 metric-ospf=1 metric-static=1 redistribute-bgp=no \
    redistribute-connected=no redistribute-ospf=no redistribute-static=no \
    routing-table=main timeout-timer=3m update-timer=30s
/snmp
# verbose 04 06 (2 rows); left out by compact 05; 6 of 7 also v7 verbose values
set contact="" enabled=no engine-id="" location="" trap-generators=temp-exception \
    trap-target="" trap-version=1
/snmp community
# verbose 04 06 (2 rows); left out by compact 03; all also v7 verbose values
set authentication-password="" authentication-protocol=MD5 disabled=no \
    encryption-password="" encryption-protocol=DES read-access=yes security=none \
    write-access=no
/system clock
# verbose 04 06 (2 rows); left out by compact 02 03 07; all also v7 verbose values
set time-zone-autodetect=yes
/system clock manual
# verbose 04 06 (2 rows); menu in no v6 compact export; 2 of 4 also v7 verbose values
set dst-delta=+00:00 dst-end="jan/01/1970 00:00:00" dst-start="jan/01/1970 00:00:00" \
    time-zone=+00:00
/system leds
# verbose 04 06 (8 rows); menu in no v6 compact export
set disabled=no
/system leds settings
# verbose 04 06 (2 rows); menu in no v6 compact export; all also v7 verbose values
set all-leds-off=never
/system logging
# verbose 04 06 (8 rows); left out by compact 01; all also v7 verbose values
set disabled=no prefix=""
/system note
# verbose 04 06 (2 rows); menu in no v6 compact export; 1 of 2 also v7 verbose values
set note="" show-at-login=yes
/system ntp client
# verbose 04 06 (2 rows); left out by compact 01
set server-dns-names=""
/system resource irq
# verbose 04 06 (7 rows); menu in no v6 compact export; all also v7 verbose values
set cpu=auto
/system routerboard settings
# verbose 04 06 (2 rows); left out by compact 02 03
set boot-device=nand-if-fail-then-ethernet boot-protocol=bootp force-backup-booter=no \
    protected-routerboot=disabled reformat-hold-button=20s reformat-hold-button-max=10m \
    silent-boot=no
/system upgrade mirror
# verbose 04 06 (2 rows); menu in no v6 compact export
set check-interval=1d enabled=no primary-server=0.0.0.0 secondary-server=0.0.0.0 user=""
/system watchdog
# verbose 04 06 (2 rows); menu in no v6 compact export; all also v7 verbose values
set auto-send-supout=no ping-start-after-boot=5m ping-timeout=1m watch-address=none
/tool bandwidth-server
# verbose 04 06 (2 rows); menu in no v6 compact export; all also v7 verbose values
set allocate-udp-ports-from=2000 authenticate=yes enabled=yes max-sessions=100
/tool e-mail
# verbose 04 06 (2 rows); menu in no v6 compact export; 4 of 5 also v7 verbose values
set from=<> password="" port=25 start-tls=no user=""
/tool graphing
# verbose 04 06 (2 rows); menu in no v6 compact export; all also v7 verbose values
set page-refresh=300 store-every=5min
/tool mac-server ping
# verbose 04 06 (2 rows); menu in no v6 compact export; all also v7 verbose values
set enabled=yes
/tool romon
# verbose 04 06 (2 rows); left out by compact 01; all also v7 verbose values
set id=00:00:00:00:00:00 secrets=""
/tool romon port
# verbose 04 06 (2 rows); menu in no v6 compact export; all also v7 verbose values
set cost=100 disabled=no forbid=no secrets=""
/tool sms
# verbose 04 06 (2 rows); menu in no v6 compact export; 6 of 7 also v7 verbose values
set allowed-number="" auto-erase=no channel=0 port=none receive-enabled=no secret="" \
    sim-pin=""
/tool sniffer
# verbose 04 06 (2 rows); menu in no v6 compact export; all also v7 verbose values
set file-limit=1000KiB file-name="" filter-cpu="" filter-direction=any filter-interface="" \
    filter-ip-address="" filter-ip-protocol="" filter-ipv6-address="" \
    filter-mac-address="" filter-mac-protocol="" filter-operator-between-entries=or \
    filter-port="" filter-size="" filter-stream=no memory-limit=100KiB memory-scroll=yes \
    only-headers=no streaming-enabled=no streaming-server=0.0.0.0:37008
/tool traffic-generator
# verbose 04 06 (2 rows); menu in no v6 compact export; 3 of 4 also v7 verbose values
set latency-distribution-max=100us measure-out-of-order=yes stats-samples-to-keep=100 \
    test-id=0
/user aaa
# verbose 04 06 (2 rows); menu in no v6 compact export; all also v7 verbose values
set accounting=yes default-group=read exclude-groups="" interim-update=0s use-radius=no
/user group
# verbose 04 06 (6 rows); left out by compact 02 03; all also v7 verbose values
set skin=default
"#;

/// Known RouterOS 7 defaults (see the module docs for the method).
const DEFAULTS_V7: &str = r#"
/certificate settings
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set crl-download=no crl-store=ram crl-use=no
/interface bridge port-controller
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set bridge=none cascade-ports="" switch=none
/interface bridge port-extender
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set control-ports="" excluded-ports="" switch=none
/interface bridge settings
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set allow-fast-path=yes use-ip-firewall=no use-ip-firewall-for-pppoe=no \
    use-ip-firewall-for-vlan=no
/interface detect-internet
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set detect-interface-list=none internet-interface-list=none lan-interface-list=none \
    wan-interface-list=none
/interface ethernet
# verbose 15 (2 rows); left out by compact 10 11 13 14; 8 of 10 also v6 verbose values
set arp=enabled arp-timeout=auto auto-negotiation=yes cable-settings=default \
    disable-running-check=no disabled=no loop-protect=default loop-protect-disable-time=5m \
    loop-protect-send-interval=5s mtu=1500
/interface l2tp-server server
# verbose 15 (1 row); left out by compact 09; all also v6 verbose values
set allow-fast-path=no authentication=pap,chap,mschap1,mschap2 caller-id-type=ip-address \
    default-profile=default-encryption ipsec-secret="" keepalive-timeout=30 max-mru=1450 \
    max-mtu=1450 max-sessions=unlimited mrru=disabled one-session-per-host=no
/interface list
# verbose 15 (2 rows); left out by compact 08 09 10 11 13 14; 1 of 2 also v6 verbose values
add exclude="" include=""
# verbose 15 (4 rows); menu in no v7 compact export; all also v6 verbose values
set exclude="" include=""
/interface list member
# verbose 15 (2 rows); left out by compact 08 09 10 11 13 14
add disabled=no
/interface lte apn
# verbose 15 (1 row); left out by compact 10; all also v6 verbose values
set add-default-route=yes default-route-distance=2 name=default use-peer-dns=yes
/interface pptp-server server
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set authentication=mschap1,mschap2 default-profile=default-encryption enabled=no \
    keepalive-timeout=30 max-mru=1450 max-mtu=1450 mrru=disabled
/interface sstp-server server
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set authentication=pap,chap,mschap1,mschap2 certificate=none default-profile=default \
    enabled=no keepalive-timeout=60 max-mru=1500 max-mtu=1500 mrru=disabled pfs=no \
    port=443 tls-version=any verify-client-certificate=no
/ip address
# verbose 15 (2 rows); left out by compact 08 09 10 11 13 14; all also v6 verbose values
add disabled=no
/ip cloud
# verbose 15 (1 row); left out by compact 08 09; all also v6 verbose values
set ddns-update-interval=none update-time=yes
/ip cloud advanced
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set use-local-address=no
/ip dhcp-client
# verbose 15 (1 row); left out by compact 08 09 13 14 16; all also v6 verbose values
add add-default-route=yes default-route-distance=1 use-peer-dns=yes use-peer-ntp=yes
/ip dhcp-server
# verbose 15 (1 row); left out by compact 08 09 10 13 14; all also v6 verbose values
add lease-script="" use-radius=no
/ip dhcp-server config
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set accounting=yes interim-update=0s store-leases-disk=5m
/ip dhcp-server network
# verbose 15 (1 row); left out by compact 08 09 10 11 13 14; all also v6 verbose values
add caps-manager="" dhcp-option="" ntp-server="" wins-server=""
/ip dns
# verbose 15 (1 row); left out by compact 08 09 10 11 13 14; all also v6 verbose values
set cache-size=2048KiB max-concurrent-queries=100 max-concurrent-tcp-sessions=20 \
    max-udp-packet-size=4096 query-server-timeout=2s query-total-timeout=10s \
    use-doh-server=""
/ip firewall connection tracking
# verbose 15 (1 row); left out by compact 10 14; all also v6 verbose values
set generic-timeout=10m icmp-timeout=10s loose-tcp-tracking=yes tcp-close-timeout=10s \
    tcp-close-wait-timeout=10s tcp-established-timeout=1d tcp-fin-wait-timeout=10s \
    tcp-last-ack-timeout=10s tcp-max-retrans-timeout=5m tcp-syn-received-timeout=5s \
    tcp-syn-sent-timeout=5s tcp-time-wait-timeout=10s tcp-unacked-timeout=5m \
    udp-stream-timeout=3m
/ip firewall nat
# verbose 15 (2 rows); left out by compact 08 09 10 13 14
add !connection-bytes !connection-limit !connection-mark !connection-rate !connection-type \
    !content disabled=no !dscp !dst-address !dst-address-list !dst-address-type !dst-limit \
    !fragment !in-bridge-port !in-bridge-port-list !in-interface !in-interface-list \
    !ingress-priority !ipsec-policy !ipv4-options !layer7-protocol !limit log=no \
    log-prefix="" !nth !out-bridge-port !out-bridge-port-list !out-interface !packet-mark \
    !packet-size !per-connection-classifier !priority !protocol !psd !random !routing-mark \
    !src-address-list !src-address-type !src-mac-address !time !to-addresses !to-ports \
    !ttl
/ip hotspot profile
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set dns-name="" hotspot-address=0.0.0.0 html-directory-override="" http-cookie-lifetime=3d \
    http-proxy=0.0.0.0:0 login-by=cookie,http-chap name=default smtp-server=0.0.0.0 \
    split-user-domain=no use-radius=no
/ip hotspot service-port
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set disabled=no ports=21
/ip hotspot user
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set disabled=no
/ip hotspot user profile
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set add-mac-cookie=yes address-list="" idle-timeout=none !insert-queue-before \
    keepalive-timeout=2m mac-cookie-timeout=3d name=default !parent-queue !queue-type \
    shared-users=1 status-autorefresh=1m transparent-proxy=no
/ip ipsec mode-config
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set responder=no use-responder-dns=exclusively
/ip ipsec policy
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set disabled=no dst-address=::/0 group=default proposal=default protocol=all \
    src-address=::/0 template=yes
/ip ipsec policy group
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set name=default
/ip ipsec profile
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set dh-group=modp2048,modp1024 enc-algorithm=aes-128,3des hash-algorithm=sha1 lifetime=1d \
    name=default nat-traversal=yes proposal-check=obey
/ip ipsec proposal
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set auth-algorithms=sha1 disabled=no enc-algorithms=aes-256-cbc,aes-192-cbc,aes-128-cbc \
    lifetime=30m name=default pfs-group=modp1024
/ip ipsec settings
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set accounting=yes interim-update=0s xauth-use-radius=no
/ip neighbor discovery-settings
# verbose 15 (1 row); left out by compact 08 09 10 11 13 14; all also v6 verbose values
set lldp-med-net-policy-vlan=disabled protocol=cdp,lldp,mndp
/ip proxy
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set always-from-cache=no anonymous=no cache-administrator=webmaster cache-hit-dscp=4 \
    cache-on-disk=no cache-path=web-proxy enabled=no max-cache-object-size=2048KiB \
    max-cache-size=unlimited max-client-connections=600 max-fresh-time=3d \
    max-server-connections=600 parent-proxy=:: parent-proxy-port=0 port=8080 \
    serialize-connections=no src-address=::
/ip service
# verbose 15 (8 rows); left out by compact 10 11
set max-sessions=20 vrf=main
/ip settings
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set accept-redirects=no accept-source-route=no allow-fast-path=yes arp-timeout=30s \
    icmp-rate-limit=10 icmp-rate-mask=0x1818 ip-forward=yes rp-filter=no \
    secure-redirects=yes send-redirects=yes tcp-syncookies=no
/ip smb
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set domain=MSHOME interfaces=all
/ip smb users
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set disabled=no password="" read-only=yes
/ip socks
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set auth-method=none connection-idle-timeout=2m enabled=no max-connections=200 version=4
/ip ssh
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set always-allow-password-login=no host-key-size=2048 strong-crypto=no
/ip tftp settings
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set max-block-size=4096
/ip traffic-flow
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set active-flow-timeout=30m enabled=no inactive-flow-timeout=15s interfaces=all \
    packet-sampling=no sampling-interval=0 sampling-space=0
/ip traffic-flow ipfix
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set bytes=yes dst-address=yes dst-address-mask=yes dst-mac-address=yes dst-port=yes \
    first-forwarded=yes icmp-code=yes icmp-type=yes igmp-type=yes in-interface=yes \
    ip-header-length=yes ip-total-length=yes ipv6-flow-label=yes is-multicast=yes \
    last-forwarded=yes nat-dst-address=yes nat-dst-port=yes nat-events=no \
    nat-src-address=yes nat-src-port=yes out-interface=yes packets=yes protocol=yes \
    src-address=yes src-address-mask=yes src-mac-address=yes src-port=yes \
    sys-init-time=yes tcp-ack-num=yes tcp-flags=yes tcp-seq-num=yes tcp-window-size=yes \
    tos=yes ttl=yes udp-length=yes
/ip upnp
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set enabled=no show-dummy-rule=yes
/ppp aaa
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set accounting=yes interim-update=0s use-circuit-id-in-nas-port-id=no use-radius=no
/ppp profile
# verbose 15 (2 rows); left out by compact 09; 23 of 26 also v6 verbose values
set address-list="" !bridge !bridge-horizon bridge-learning=default !bridge-path-cost \
    !bridge-port-priority !bridge-port-trusted !bridge-port-vid change-tcp-mss=yes \
    !idle-timeout !incoming-filter !insert-queue-before !interface-list on-down="" \
    on-up="" only-one=default !outgoing-filter !parent-queue !queue-type !rate-limit \
    !session-timeout use-compression=default use-ipv6=yes use-mpls=default \
    use-upnp=default !wins-server
/radius incoming
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set accept=no port=3799
/snmp
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set contact="" enabled=no location="" trap-generators=temp-exception trap-target="" \
    trap-version=1
/snmp community
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set authentication-password="" authentication-protocol=MD5 disabled=no \
    encryption-password="" encryption-protocol=DES read-access=yes security=none \
    write-access=no
/system clock
# verbose 15 (1 row); left out by compact 08 09 10 13 14 16; all also v6 verbose values
set time-zone-autodetect=yes
/system clock manual
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set dst-delta=+00:00 time-zone=+00:00
/system logging
# verbose 15 (4 rows); menu in no v7 compact export; all also v6 verbose values
set disabled=no prefix=""
/system note
# verbose 15 (1 row); left out by compact 08 13 14 16; all also v6 verbose values
set note=""
/system resource irq
# verbose 15 (7 rows); menu in no v7 compact export; all also v6 verbose values
set cpu=auto
/system watchdog
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set auto-send-supout=no ping-start-after-boot=5m ping-timeout=1m watch-address=none
/tool bandwidth-server
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set allocate-udp-ports-from=2000 authenticate=yes enabled=yes max-sessions=100
/tool e-mail
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set from=<> password="" port=25 user=""
/tool graphing
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set page-refresh=300 store-every=5min
/tool mac-server ping
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set enabled=yes
/tool romon
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set enabled=no id=00:00:00:00:00:00 secrets=""
/tool romon port
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set cost=100 disabled=no forbid=no secrets=""
/tool sms
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set allowed-number="" channel=0 port=none receive-enabled=no secret="" sim-pin=""
/tool sniffer
# verbose 15 (1 row); left out by compact 11; all also v6 verbose values
set file-limit=1000KiB file-name="" filter-cpu="" filter-direction=any filter-interface="" \
    filter-ip-address="" filter-ipv6-address="" filter-mac-address="" \
    filter-mac-protocol="" filter-operator-between-entries=or filter-size="" \
    filter-stream=no memory-limit=100KiB memory-scroll=yes only-headers=no \
    streaming-enabled=no streaming-server=0.0.0.0:37008
/tool traffic-generator
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set latency-distribution-max=100us stats-samples-to-keep=100 test-id=0
/user aaa
# verbose 15 (1 row); menu in no v7 compact export; all also v6 verbose values
set accounting=yes default-group=read exclude-groups="" interim-update=0s use-radius=no
/user group
# verbose 15 (3 rows); menu in no v7 compact export; all also v6 verbose values
set skin=default
"#;

/// Which rows of a menu a default applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RowKind {
    /// Entries created by `add`.
    Add,
    /// `set` statements: singleton settings and built-in items.
    Set,
}

/// A known default value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// `key=value`.
    Value(&'static str),
    /// The property is not set by default (verbose exports write `!key`).
    NotSet,
}

impl DefaultValue {
    /// Whether an attribute holds this default.
    pub fn matches(self, attr: &Attr) -> bool {
        match self {
            DefaultValue::Value(v) => attr.value.as_deref() == Some(v),
            DefaultValue::NotSet => attr.value.is_none(),
        }
    }
}

/// One entry of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownDefault {
    /// RouterOS major version (6 or 7).
    pub major: u32,
    /// Menu.
    pub path: &'static MenuPath,
    /// Rows it applies to.
    pub rows: RowKind,
    /// Property name (v7 dotted names in full).
    pub key: &'static str,
    /// The default.
    pub value: DefaultValue,
    /// Where it comes from (corpus file numbers and how they agree).
    pub source: &'static str,
}

/// The defaults of one menu's rows in one major version.
#[derive(Debug)]
struct Group {
    major: u32,
    path: MenuPath,
    rows: RowKind,
    source: String,
    /// Sorted by key.
    props: Vec<(String, Option<String>)>,
}

impl Group {
    fn get(&'static self, key: &str) -> Option<DefaultValue> {
        let i = self
            .props
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()?;
        let (_, v) = self.props.get(i)?;
        Some(match v {
            Some(v) => DefaultValue::Value(v.as_str()),
            None => DefaultValue::NotSet,
        })
    }
}

#[derive(Debug, Default)]
struct Table {
    groups: Vec<Group>,
    by_path: HashMap<MenuPath, Vec<usize>>,
}

fn load(major: u32, text: &str, table: &mut Table) {
    // The texts are constants checked by the tests; a text that did not parse would only
    // leave its version without known defaults.
    let Ok(cfg) = parse_export(text) else {
        return;
    };
    for sec in &cfg.sections {
        let mut source = String::new();
        for st in &sec.stmts {
            let (rows, attrs) = match st {
                Stmt::Remark(r) => {
                    source = r.trim().to_string();
                    continue;
                }
                Stmt::Add(e) => (RowKind::Add, &e.attrs),
                Stmt::Set(s) => (RowKind::Set, &s.attrs),
                Stmt::Remove(_) => continue,
            };
            let mut props: Vec<(String, Option<String>)> = attrs
                .iter()
                .map(|a| (a.key.clone(), a.value.clone()))
                .collect();
            props.sort();
            table
                .by_path
                .entry(sec.path.clone())
                .or_default()
                .push(table.groups.len());
            table.groups.push(Group {
                major,
                path: sec.path.clone(),
                rows,
                source: std::mem::take(&mut source),
                props,
            });
        }
    }
}

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    let mut t = Table::default();
    load(6, DEFAULTS_V6, &mut t);
    load(7, DEFAULTS_V7, &mut t);
    t
});

/// The groups of a menu and row kind for a major version.
fn groups_for(path: &MenuPath, rows: RowKind) -> impl Iterator<Item = &'static Group> + Clone {
    let table: &'static Table = &TABLE;
    table
        .by_path
        .get(path)
        .into_iter()
        .flatten()
        .filter_map(|&i| table.groups.get(i))
        .filter(move |g| g.rows == rows)
}

/// The known default of a property, for a major version; with `None` (no header) only a
/// default that RouterOS 6 and 7 share.
pub fn known_default(
    major: Option<u32>,
    path: &MenuPath,
    rows: RowKind,
    key: &str,
) -> Option<DefaultValue> {
    lookup(groups_for(path, rows), major, key)
}

fn lookup(
    groups: impl Iterator<Item = &'static Group> + Clone,
    major: Option<u32>,
    key: &str,
) -> Option<DefaultValue> {
    let of = |m: u32| {
        groups
            .clone()
            .filter(|g| g.major == m)
            .find_map(|g| g.get(key))
    };
    match major {
        Some(m) => of(m),
        None => match (of(6), of(7)) {
            (Some(a), Some(b)) if a == b => Some(a),
            _ => None,
        },
    }
}

/// Every entry of the table, by major version and menu.
pub fn known_defaults() -> impl Iterator<Item = KnownDefault> {
    let table: &'static Table = &TABLE;
    table.groups.iter().flat_map(|g| {
        g.props.iter().map(move |(k, v)| KnownDefault {
            major: g.major,
            path: &g.path,
            rows: g.rows,
            key: k.as_str(),
            value: match v {
                Some(v) => DefaultValue::Value(v.as_str()),
                None => DefaultValue::NotSet,
            },
            source: g.source.as_str(),
        })
    })
}

/// The names a `set` selector picks its item by (`[ find default-name=X ]`,
/// `[ find name=X ]`, `set X`).
fn selected_name(sel: &Selector) -> Option<&str> {
    match sel {
        Selector::Name { name, .. } => Some(name.as_str()),
        Selector::Find(f) => f.terms.iter().find_map(|t| match t {
            FindTerm::Eq { key, value, .. } if key == "name" || key == "default-name" => {
                Some(value.as_str())
            }
            _ => None,
        }),
        _ => None,
    }
}

/// Drops the known defaults of one row; returns how many properties went.
fn drop_row(
    attrs: &mut Vec<Attr>,
    groups: impl Iterator<Item = &'static Group> + Clone,
    major: Option<u32>,
    selector: Option<&Selector>,
) -> usize {
    let before = attrs.len();
    let orig_mac = attrs
        .iter()
        .find(|a| a.key == "orig-mac-address")
        .and_then(|a| a.value.clone());
    let name = selector.and_then(selected_name);
    attrs.retain(|a| {
        let implied = match a.key.as_str() {
            "orig-mac-address" => true,
            "mac-address" => orig_mac.is_some() && a.value == orig_mac,
            "name" => name.is_some() && a.value.as_deref() == name,
            _ => false,
        };
        let known = || lookup(groups.clone(), major, &a.key).is_some_and(|d| d.matches(a));
        !(implied || known())
    });
    before - attrs.len()
}

impl Config {
    /// Drops every property equal to its known default (see the module docs), for the
    /// header's major version (without a header: only defaults RouterOS 6 and 7 share), a
    /// `set` left without properties, and a menu left without commands. Returns how many
    /// properties were dropped. Compact text parses to a configuration this leaves as it is
    /// as far as the corpus shows.
    pub fn drop_known_defaults(&mut self) -> usize {
        let major = self.header.major_version();
        let mut dropped = 0;
        let mut emptied = vec![false; self.sections.len()];
        for (sec, emptied) in self.sections.iter_mut().zip(emptied.iter_mut()) {
            let adds = groups_for(&sec.path, RowKind::Add);
            let sets = groups_for(&sec.path, RowKind::Set);
            let before = sec.stmts.len();
            sec.stmts.retain_mut(|st| match st {
                Stmt::Add(e) => {
                    dropped += drop_row(&mut e.attrs, adds.clone(), major, None);
                    true
                }
                Stmt::Set(s) => {
                    let n = drop_row(&mut s.attrs, sets.clone(), major, Some(&s.selector));
                    dropped += n;
                    n == 0 || !s.attrs.is_empty()
                }
                Stmt::Remove(_) | Stmt::Remark(_) => true,
            });
            *emptied = sec.stmts.len() < before
                && !sec.stmts.iter().any(|s| !matches!(s, Stmt::Remark(_)));
        }
        let mut flags = emptied.into_iter();
        self.sections.retain(|_| !flags.next().unwrap_or(false));
        dropped
    }

    /// A copy with the known defaults dropped ([`Config::drop_known_defaults`]).
    pub fn without_known_defaults(&self) -> Config {
        let mut c = self.clone();
        c.drop_known_defaults();
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_reads_whole() {
        let all: Vec<KnownDefault> = known_defaults().collect();
        assert_eq!(all.iter().filter(|d| d.major == 6).count(), 585);
        assert_eq!(all.iter().filter(|d| d.major == 7).count(), 395);
        for d in &all {
            assert!(d.source.starts_with("verbose "), "{d:?}");
            assert!(!d.path.is_root());
        }
        // one group per menu, row kind and version
        let mut seen = std::collections::HashSet::new();
        for g in &TABLE.groups {
            assert!(seen.insert((g.major, g.path.clone(), g.rows)), "{g:?}");
            assert!(g.props.windows(2).all(|w| w[0].0 < w[1].0), "{g:?}");
        }
    }

    #[test]
    fn lookups() {
        let p = MenuPath::parse("/ip firewall connection tracking");
        let udp = |m| known_default(m, &p, RowKind::Set, "udp-timeout");
        assert_eq!(udp(Some(6)), Some(DefaultValue::Value("10s")));
        assert_eq!(udp(Some(7)), None);
        assert_eq!(udp(None), None);
        let tcp = |m| known_default(m, &p, RowKind::Set, "tcp-established-timeout");
        assert_eq!(tcp(None), Some(DefaultValue::Value("1d")));
        assert_eq!(tcp(Some(8)), None);
        assert_eq!(
            known_default(Some(6), &p, RowKind::Add, "tcp-established-timeout"),
            None
        );
        let nat = MenuPath::parse("/ip firewall nat");
        assert_eq!(
            known_default(Some(7), &nat, RowKind::Add, "connection-mark"),
            Some(DefaultValue::NotSet)
        );
    }

    #[test]
    fn drops_defaults_and_emptied_statements_only() {
        let t = "# 2025-01-01 00:00:00 by RouterOS 7.17.2\n\
                 /interface ethernet\n\
                 set [ find default-name=ether1 ] arp=enabled mac-address=0C:00:00:00:00:01 mtu=9000 name=ether1 orig-mac-address=0C:00:00:00:00:01\n\
                 set [ find default-name=ether2 ] arp=enabled mtu=1500 name=ether2\n\
                 /ip firewall nat\n\
                 add action=masquerade chain=srcnat !connection-mark log=no out-interface=ether1\n\
                 /ip dns\n\
                 set cache-size=2048KiB servers=1.1.1.1\n\
                 /ip ipsec profile\n\
                 set [ find default=yes ] dh-group=modp2048,modp1024 name=default\n\
                 /queue interface\n\
                 set ether1 queue=only-hardware-queue\n";
        let mut c = parse_export(t).unwrap();
        let n = c.drop_known_defaults();
        assert_eq!(n, 12);
        assert_eq!(
            c.normalised(),
            "/interface ethernet\nset [ find default-name=ether1 ] mtu=9000\n\
             /ip firewall nat\nadd action=masquerade chain=srcnat out-interface=ether1\n\
             /ip dns\nset servers=1.1.1.1\n/queue interface\nset ether1 queue=only-hardware-queue\n"
        );
        // idempotent, and compact text stays as it is
        assert_eq!(c.drop_known_defaults(), 0);
    }
}
