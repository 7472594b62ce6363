//! Hardware catalog, factory default configurations and the menu catalog. Everything here
//! is immutable and shared by all devices of a fleet.

use std::sync::Arc;

use rosconfig::{Attr, Config, MenuPath};

/// A board model.
#[derive(Debug)]
pub struct Board {
    /// `# model =` and `/system routerboard` `model` (None for CHR).
    pub model: Option<&'static str>,
    /// `board-name` of `/system resource`.
    pub board_name: &'static str,
    /// `architecture-name`.
    pub arch: &'static str,
    /// `cpu`.
    pub cpu: &'static str,
    /// `cpu-count`.
    pub cpu_count: u32,
    /// `cpu-frequency` (MHz).
    pub cpu_mhz: u32,
    /// `total-memory` in bytes.
    pub memory: u64,
    /// `total-hdd-space` in bytes.
    pub storage: u64,
    /// Ethernet ports (default names).
    pub ports: &'static [&'static str],
}

/// The boards devices are drawn from.
pub static BOARDS: &[Board] = &[
    Board {
        model: Some("RB5009UG+S+"),
        board_name: "RB5009UG+S+",
        arch: "arm64",
        cpu: "ARM64",
        cpu_count: 4,
        cpu_mhz: 1400,
        memory: 1024 * 1024 * 1024,
        storage: 1024 * 1024 * 1024,
        ports: &[
            "ether1",
            "ether2",
            "ether3",
            "ether4",
            "ether5",
            "ether6",
            "ether7",
            "ether8",
            "sfp-sfpplus1",
        ],
    },
    Board {
        model: Some("RB951Ui-2HnD"),
        board_name: "RB951Ui-2HnD",
        arch: "mipsbe",
        cpu: "MIPS 24Kc V7.4",
        cpu_count: 1,
        cpu_mhz: 600,
        memory: 128 * 1024 * 1024,
        storage: 128 * 1024 * 1024,
        ports: &["ether1", "ether2", "ether3", "ether4", "ether5"],
    },
    Board {
        model: Some("CCR2004-1G-12S+2XS"),
        board_name: "CCR2004-1G-12S+2XS",
        arch: "arm64",
        cpu: "ARM64",
        cpu_count: 4,
        cpu_mhz: 1700,
        memory: 4 * 1024 * 1024 * 1024,
        storage: 128 * 1024 * 1024,
        ports: &[
            "ether1",
            "sfp-sfpplus1",
            "sfp-sfpplus2",
            "sfp-sfpplus3",
            "sfp-sfpplus4",
            "sfp28-1",
            "sfp28-2",
        ],
    },
    Board {
        model: Some("RBD52G-5HacD2HnD-TC"),
        board_name: "hAP ac^2",
        arch: "arm",
        cpu: "ARMv7",
        cpu_count: 4,
        cpu_mhz: 716,
        memory: 128 * 1024 * 1024,
        storage: 16 * 1024 * 1024,
        ports: &["ether1", "ether2", "ether3", "ether4", "ether5"],
    },
    Board {
        model: None,
        board_name: "CHR",
        arch: "x86_64",
        cpu: "Intel(R) Xeon(R)",
        cpu_count: 2,
        cpu_mhz: 2400,
        memory: 1024 * 1024 * 1024,
        storage: 128 * 1024 * 1024,
        ports: &["ether1", "ether2"],
    },
];

/// RouterOS versions devices are drawn from (a v6/v7 mix).
pub static VERSIONS: &[&str] = &["7.16.2", "6.49.13", "7.12.1", "7.18.2", "6.49.7", "7.19.4"];

/// Finds a board by model line (falls back to CHR for unknown or absent models).
pub fn board_for_model(model: Option<&str>) -> &'static Board {
    let found = model.and_then(|m| BOARDS.iter().find(|b| b.model == Some(m)));
    match found {
        Some(b) => b,
        None => match model {
            // an unknown RouterBOARD: borrow the RB5009 shape
            Some(_) => &BOARDS[0],
            None => &BOARDS[4],
        },
    }
}

fn p(s: &str) -> MenuPath {
    MenuPath::parse(s)
}

/// The factory configuration of a fresh device (shared by all devices of one kind until a
/// device changes its configuration: copy-on-write).
pub fn factory_config(board: &Board, major: u16) -> Arc<Config> {
    let mut c = Config::new();
    c.add(
        &p("/interface bridge"),
        vec![
            Attr::new("admin-mac", "00:00:5E:00:53:01"),
            Attr::new("auto-mac", "no"),
            Attr::new("comment", "defconf"),
            Attr::new("name", "bridge"),
        ],
    );
    c.add(
        &p("/interface list"),
        vec![Attr::new("comment", "defconf"), Attr::new("name", "WAN")],
    );
    c.add(
        &p("/interface list"),
        vec![Attr::new("comment", "defconf"), Attr::new("name", "LAN")],
    );
    c.add(
        &p("/ip pool"),
        vec![
            Attr::new("name", "default-dhcp"),
            Attr::new("ranges", "192.168.88.10-192.168.88.254"),
        ],
    );
    for port in board.ports.iter().skip(1) {
        c.add(
            &p("/interface bridge port"),
            vec![
                Attr::new("bridge", "bridge"),
                Attr::new("comment", "defconf"),
                Attr::new("interface", *port),
            ],
        );
    }
    c.add(
        &p("/interface list member"),
        vec![
            Attr::new("comment", "defconf"),
            Attr::new("interface", "bridge"),
            Attr::new("list", "LAN"),
        ],
    );
    if let Some(first) = board.ports.first() {
        c.add(
            &p("/interface list member"),
            vec![
                Attr::new("comment", "defconf"),
                Attr::new("interface", *first),
                Attr::new("list", "WAN"),
            ],
        );
    }
    c.add(
        &p("/ip address"),
        vec![
            Attr::new("address", "192.168.88.1/24"),
            Attr::new("comment", "defconf"),
            Attr::new("interface", "bridge"),
            Attr::new("network", "192.168.88.0"),
        ],
    );
    if let Some(first) = board.ports.first() {
        c.add(
            &p("/ip dhcp-client"),
            vec![
                Attr::new("comment", "defconf"),
                Attr::new("interface", *first),
            ],
        );
    }
    c.set_settings(
        &p("/ip dns"),
        vec![Attr::new("allow-remote-requests", "yes")],
    );
    let f = p("/ip firewall filter");
    c.add(
        &f,
        vec![
            Attr::new("action", "accept"),
            Attr::new("chain", "input"),
            Attr::new("comment", "defconf: accept established,related,untracked"),
            Attr::new("connection-state", "established,related,untracked"),
        ],
    );
    c.add(
        &f,
        vec![
            Attr::new("action", "drop"),
            Attr::new("chain", "input"),
            Attr::new("comment", "defconf: drop invalid"),
            Attr::new("connection-state", "invalid"),
        ],
    );
    c.add(
        &f,
        vec![
            Attr::new("action", "accept"),
            Attr::new("chain", "input"),
            Attr::new("comment", "defconf: accept ICMP"),
            Attr::new("protocol", "icmp"),
        ],
    );
    c.add(
        &f,
        vec![
            Attr::new("action", "accept"),
            Attr::new("chain", "forward"),
            Attr::new("comment", "defconf: accept established,related, untracked"),
            Attr::new("connection-state", "established,related,untracked"),
        ],
    );
    c.add(
        &p("/ip firewall nat"),
        vec![
            Attr::new("action", "masquerade"),
            Attr::new("chain", "srcnat"),
            Attr::new("comment", "defconf: masquerade"),
            Attr::new("ipsec-policy", "out,none"),
            Attr::new("out-interface-list", "WAN"),
        ],
    );
    c.add(
        &p("/ip route"),
        vec![
            Attr::new("dst-address", "10.255.0.0/16"),
            Attr::new("gateway", "bridge"),
        ],
    );
    c.add(&p("/system logging"), vec![Attr::new("topics", "script")]);
    c.add(
        &p("/system scheduler"),
        vec![
            Attr::new("interval", "1d"),
            Attr::new("name", "daily-backup"),
            Attr::new(
                "on-event",
                "/system backup save name=daily dont-encrypt=yes",
            ),
            Attr::new(
                "policy",
                "ftp,reboot,read,write,policy,test,password,sniff,sensitive,romon",
            ),
            Attr::new(
                "start-date",
                if major >= 7 {
                    "2024-01-01"
                } else {
                    "jan/01/2024"
                },
            ),
            Attr::new("start-time", "03:00:00"),
        ],
    );
    c.add(
        &p("/system script"),
        vec![
            Attr::new("dont-require-permissions", "no"),
            Attr::new("name", "hello"),
            Attr::new("owner", "admin"),
            Attr::new(
                "policy",
                "ftp,reboot,read,write,policy,test,password,sniff,sensitive,romon",
            ),
            Attr::new("source", ":log info \"hello\""),
        ],
    );
    c.set_settings(
        &p("/system clock"),
        vec![Attr::new("time-zone-name", "Europe/Riga")],
    );
    c.set_settings(&p("/system note"), vec![Attr::new("show-at-login", "no")]);
    c.dotted_shorthand = Some(major >= 7);
    Arc::new(c)
}

/// Menus whose `print` answers one row without `.id` (singletons), from the corpus and the
/// notes.
pub static SINGLETON_MENUS: &[&str] = &[
    "/caps-man/aaa",
    "/caps-man/manager",
    "/certificate/settings",
    "/console/settings",
    "/disk/settings",
    "/interface/bridge/port-controller",
    "/interface/bridge/port-extender",
    "/interface/bridge/settings",
    "/interface/detect-internet",
    "/interface/l2tp-server/server",
    "/interface/lte/settings",
    "/interface/ovpn-server/server",
    "/interface/pptp-server/server",
    "/interface/sstp-server/server",
    "/interface/wifi/cap",
    "/interface/wifi/capsman",
    "/interface/wifiwave2/cap",
    "/interface/wifiwave2/capsman",
    "/interface/wireless/align",
    "/interface/wireless/cap",
    "/interface/wireless/sniffer",
    "/interface/wireless/snooper",
    "/ip/accounting",
    "/ip/accounting/web-access",
    "/ip/cloud",
    "/ip/cloud/advanced",
    "/ip/dhcp-server/config",
    "/ip/dns",
    "/ip/firewall/connection/tracking",
    "/ip/ipsec/settings",
    "/ip/media/settings",
    "/ip/nat-pmp",
    "/ip/neighbor/discovery-settings",
    "/ip/proxy",
    "/ip/settings",
    "/ip/smb",
    "/ip/socks",
    "/ip/ssh",
    "/ip/tftp/settings",
    "/ip/traffic-flow",
    "/ip/traffic-flow/ipfix",
    "/ip/upnp",
    "/ipv6/nd/prefix/default",
    "/ipv6/settings",
    "/lcd",
    "/mpls",
    "/mpls/ldp",
    "/mpls/settings",
    "/port/firmware",
    "/ppp/aaa",
    "/radius/incoming",
    "/routing/igmp-proxy",
    "/routing/mme",
    "/routing/rip",
    "/routing/settings",
    "/snmp",
    "/system/clock",
    "/system/clock/manual",
    "/system/console/screen",
    "/system/hardware",
    "/system/health",
    "/system/identity",
    "/system/leds/settings",
    "/system/note",
    "/system/ntp/client",
    "/system/ntp/server",
    "/system/package/local-update/mirror",
    "/system/resource/usb/settings",
    "/system/routerboard/mode-button",
    "/system/routerboard/reset-button",
    "/system/routerboard/settings",
    "/system/swos",
    "/system/upgrade/mirror",
    "/system/watchdog",
    "/tool/bandwidth-server",
    "/tool/e-mail",
    "/tool/graphing",
    "/tool/mac-server",
    "/tool/mac-server/mac-winbox",
    "/tool/mac-server/ping",
    "/tool/romon",
    "/tool/sms",
    "/tool/sniffer",
    "/tool/traffic-generator",
    "/tool/user-manager/database",
    "/user/aaa",
    "/user/settings",
    "/system/resource",
    "/system/routerboard",
    "/system/package/update",
    "/system/device-mode",
];

/// Menus that exist on a device even when its configuration does not mention them.
pub static KNOWN_MENUS: &[&str] = &[
    "/caps-man/aaa",
    "/caps-man/access-list",
    "/caps-man/channel",
    "/caps-man/configuration",
    "/caps-man/datapath",
    "/caps-man/interface",
    "/caps-man/manager",
    "/caps-man/manager/interface",
    "/caps-man/provisioning",
    "/caps-man/rates",
    "/caps-man/security",
    "/certificate/settings",
    "/console/settings",
    "/disk/settings",
    "/interface/bridge",
    "/interface/bridge/nat",
    "/interface/bridge/port",
    "/interface/bridge/port-controller",
    "/interface/bridge/port-extender",
    "/interface/bridge/settings",
    "/interface/bridge/vlan",
    "/interface/detect-internet",
    "/interface/ethernet",
    "/interface/ethernet/switch",
    "/interface/ethernet/switch/port",
    "/interface/l2tp-server/server",
    "/interface/list",
    "/interface/list/member",
    "/interface/lte",
    "/interface/lte/apn",
    "/interface/lte/settings",
    "/interface/macsec/profile",
    "/interface/ovpn-server/server",
    "/interface/pppoe-client",
    "/interface/pptp-server/server",
    "/interface/sstp-server/server",
    "/interface/traffic-eng",
    "/interface/vlan",
    "/interface/vpls/bgp-vpls",
    "/interface/wifi",
    "/interface/wifi/cap",
    "/interface/wifi/capsman",
    "/interface/wifiwave2/cap",
    "/interface/wifiwave2/capsman",
    "/interface/wifiwave2/configuration",
    "/interface/wifiwave2/datapath",
    "/interface/wifiwave2/provisioning",
    "/interface/wireguard",
    "/interface/wireguard/peers",
    "/interface/wireless",
    "/interface/wireless/align",
    "/interface/wireless/cap",
    "/interface/wireless/manual-tx-power-table",
    "/interface/wireless/nstreme",
    "/interface/wireless/security-profiles",
    "/interface/wireless/sniffer",
    "/interface/wireless/snooper",
    "/ip/accounting",
    "/ip/accounting/web-access",
    "/ip/address",
    "/ip/cloud",
    "/ip/cloud/advanced",
    "/ip/dhcp-client",
    "/ip/dhcp-client/option",
    "/ip/dhcp-server",
    "/ip/dhcp-server/config",
    "/ip/dhcp-server/lease",
    "/ip/dhcp-server/network",
    "/ip/dns",
    "/ip/dns/static",
    "/ip/firewall/address-list",
    "/ip/firewall/connection/tracking",
    "/ip/firewall/filter",
    "/ip/firewall/mangle",
    "/ip/firewall/nat",
    "/ip/firewall/raw",
    "/ip/firewall/service-port",
    "/ip/hotspot",
    "/ip/hotspot/profile",
    "/ip/hotspot/service-port",
    "/ip/hotspot/user",
    "/ip/hotspot/user/profile",
    "/ip/hotspot/walled-garden",
    "/ip/ipsec/mode-config",
    "/ip/ipsec/policy",
    "/ip/ipsec/policy/group",
    "/ip/ipsec/profile",
    "/ip/ipsec/proposal",
    "/ip/ipsec/settings",
    "/ip/media/settings",
    "/ip/nat-pmp",
    "/ip/neighbor/discovery",
    "/ip/neighbor/discovery-settings",
    "/ip/pool",
    "/ip/proxy",
    "/ip/route",
    "/ip/route/vrf",
    "/ip/service",
    "/ip/settings",
    "/ip/smb",
    "/ip/smb/shares",
    "/ip/smb/users",
    "/ip/socks",
    "/ip/socks/access",
    "/ip/ssh",
    "/ip/tftp/settings",
    "/ip/traffic-flow",
    "/ip/traffic-flow/ipfix",
    "/ip/upnp",
    "/ip/vrf",
    "/ipv6/firewall/address-list",
    "/ipv6/firewall/filter",
    "/ipv6/nd",
    "/ipv6/nd/prefix/default",
    "/ipv6/settings",
    "/lcd",
    "/mpls",
    "/mpls/interface",
    "/mpls/ldp",
    "/mpls/ldp/interface",
    "/mpls/settings",
    "/mpls/traffic-eng/interface",
    "/mpls/traffic-eng/tunnel-path",
    "/port",
    "/port/firmware",
    "/ppp/aaa",
    "/ppp/profile",
    "/ppp/secret",
    "/queue/interface",
    "/queue/simple",
    "/queue/tree",
    "/queue/type",
    "/radius/incoming",
    "/routing/bfd/interface",
    "/routing/bgp/connection",
    "/routing/bgp/instance",
    "/routing/bgp/instance/vrf",
    "/routing/bgp/peer",
    "/routing/bgp/template",
    "/routing/igmp-proxy",
    "/routing/mme",
    "/routing/ospf/area",
    "/routing/ospf/instance",
    "/routing/ospf/interface-template",
    "/routing/ospf/network",
    "/routing/rip",
    "/routing/settings",
    "/snmp",
    "/snmp/community",
    "/system/clock",
    "/system/clock/manual",
    "/system/console",
    "/system/console/screen",
    "/system/hardware",
    "/system/health",
    "/system/identity",
    "/system/leds",
    "/system/leds/settings",
    "/system/logging",
    "/system/logging/action",
    "/system/note",
    "/system/ntp/client",
    "/system/ntp/client/servers",
    "/system/ntp/server",
    "/system/package/local-update/mirror",
    "/system/resource/irq",
    "/system/resource/irq/rps",
    "/system/resource/usb/settings",
    "/system/routerboard/mode-button",
    "/system/routerboard/reset-button",
    "/system/routerboard/settings",
    "/system/scheduler",
    "/system/script",
    "/system/swos",
    "/system/upgrade/mirror",
    "/system/watchdog",
    "/tool/bandwidth-server",
    "/tool/e-mail",
    "/tool/graphing",
    "/tool/graphing/interface",
    "/tool/mac-server",
    "/tool/mac-server/mac-winbox",
    "/tool/mac-server/ping",
    "/tool/romon",
    "/tool/romon/port",
    "/tool/sms",
    "/tool/sniffer",
    "/tool/traffic-generator",
    "/tool/user-manager/customer",
    "/tool/user-manager/database",
    "/tool/user-manager/user",
    "/user/aaa",
    "/user/group",
    "/user/settings",
    "/interface",
    "/file",
    "/user",
    "/user/group",
    "/user/active",
    "/system/package",
    "/log",
    "/system/history",
    "/ip/firewall/raw",
];
