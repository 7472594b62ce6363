//! Which properties hold secrets, and masking them: in parsed configurations (`normalize`
//! masks exports before they reach git) and in the raw text of change scripts, which are
//! journaled, projected, published and shown masked while the real script is kept sealed
//! for the push itself.
//!
//! Script masking works on the text, not on a parse: a script that does not parse (or that
//! the push policy refuses) must still be masked before it is stored or shown, and the
//! replacement keeps everything but the secret values byte for byte. It masks every
//! `key=value` whose key is a secret (by name, with the menu for SNMP community names),
//! with the value unquoted, quoted (`"..."`, with `\` escapes and line continuations) or
//! escaped; values that are substitutions (`[...]`) or variables (`$x`) are not literal
//! secrets and stay. Not covered: secrets in positional arguments or in script variables
//! (`:local pw "..."`); write them as `key=value`.

use crate::model::MenuPath;

/// The mask written in place of secret values (the corpus convention).
pub const MASK: &str = "MASKED";

/// Property names whose values are secrets (matched on the last dotted segment). Sources:
/// the properties the corpus exports hide or show (`/work/shared/routeros-exports`) and
/// MikroTik's "List of menus with sensitive parameters" (ROUTEROS-NOTES MT-SENS).
const SECRET_KEYS: &[&str] = &[
    "password",
    "authentication-password",
    "encryption-password",
    "mschapv2-password",
    "radius-password",
    "sae-password",
    "passphrase",
    "private-passphrase",
    "secret",
    "secrets",
    "shared-secret",
    "ipsec-secret",
    "nv2-sync-secret",
    "private-key",
    "preshared-key",
    "pre-shared-key",
    "private-pre-shared-key",
    "wpa-pre-shared-key",
    "wpa2-pre-shared-key",
    "wpa3-pre-shared-key",
    "nv2-preshared-key",
    "psk",
    "wireless-psk",
    "authentication-key",
    "auth-key",
    "management-protection-key",
    "static-key-0",
    "static-key-1",
    "static-key-2",
    "static-key-3",
    "static-sta-private-key",
    "wireless-enc-key",
    "trap-community",
    "tcp-md5-key",
    "key",
];

/// Name endings that mark a secret whatever the prefix (`radius-password`,
/// `eap-shared-secret`, ...).
const SECRET_SUFFIXES: &[&str] = &[
    "-password",
    "-secret",
    "-passphrase",
    "-pre-shared-key",
    "-preshared-key",
    "-psk",
    "-private-key",
];

/// Values that are enum settings rather than secrets and are left alone.
pub(crate) const NON_SECRET_VALUES: &[&str] = &["", "none", "empty", "disabled"];

/// Whether a property name holds a secret in any menu.
pub fn is_secret_key(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    SECRET_KEYS.contains(&last) || SECRET_SUFFIXES.iter().any(|s| last.ends_with(s))
}

/// Whether a property of a menu holds a secret.
pub fn is_secret(path: &MenuPath, key: &str) -> bool {
    if is_secret_key(key) {
        return true;
    }
    // SNMP community names are the community secret
    path.to_api() == "/snmp/community" && key == "name"
}

/// A script with its secret values masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedScript {
    /// The script with every secret value replaced by [`MASK`]; everything else unchanged.
    pub text: String,
    /// The secret values found (as written and decoded), for [`redact`]ing other text
    /// derived from the script (error messages).
    pub secrets: Vec<String>,
    /// Secret properties whose value already is the mask (`password=MASKED`): pushing such
    /// a script would set the secret to the word `MASKED`.
    pub placeholders: Vec<String>,
}

impl MaskedScript {
    /// Whether masking changed the script.
    pub fn has_secrets(&self) -> bool {
        !self.secrets.is_empty()
    }
}

const COMMANDS: &[&str] = &[
    "add", "set", "remove", "enable", "disable", "unset", "print", "export", "edit", "find",
    "move", "comment", "reset",
];

/// The menu a physical line's command works in (`None`: it does not change or name one).
/// `context` is the menu set by the last line that named only a menu.
fn line_menu(line: &str, context: &mut Vec<String>) -> Vec<String> {
    let t = line.trim_start();
    if !t.starts_with('/') {
        return context.clone();
    }
    let mut path = Vec::new();
    let mut command = false;
    for w in t.split_whitespace() {
        if w.contains('=') || w.starts_with('[') || w.starts_with('#') {
            command = true;
            break;
        }
        let parts: Vec<&str> = w.split('/').filter(|p| !p.is_empty()).collect();
        if let Some(last) = parts.last()
            && COMMANDS.contains(last)
        {
            path.extend(parts[..parts.len() - 1].iter().map(|p| (*p).to_owned()));
            command = true;
            break;
        }
        path.extend(parts.iter().map(|p| (*p).to_owned()));
    }
    if !command {
        context.clone_from(&path);
    }
    path
}

fn key_start(prev: Option<char>) -> bool {
    prev.is_none_or(|c| c.is_whitespace() || matches!(c, '[' | '{' | '(' | ';'))
}

fn key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')
}

/// Decodes a RouterOS value as written (quotes removed, `\` escapes resolved: `\"`, `\\`,
/// `\n`-style letters kept literally, `\XX` hex bytes, continuation lines joined).
fn decode(raw: &str) -> String {
    let inner = raw
        .strip_prefix('"')
        .map(|r| r.strip_suffix('"').unwrap_or(r))
        .unwrap_or(raw);
    let mut out: Vec<u8> = Vec::with_capacity(inner.len());
    let b = inner.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let n = b[i + 1];
            if n == b'\r' || n == b'\n' {
                // continuation: skip the line break and the next line's indentation
                i += 1;
                while i < b.len() && matches!(b[i], b'\r' | b'\n') {
                    i += 1;
                }
                while i < b.len() && matches!(b[i], b' ' | b'\t') {
                    i += 1;
                }
                continue;
            }
            if i + 2 < b.len()
                && n.is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit()
                && let Ok(v) = u8::from_str_radix(&inner[i + 1..i + 3], 16)
            {
                out.push(v);
                i += 3;
                continue;
            }
            out.push(n);
            i += 2;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// End (byte index, exclusive) of the value starting at `start`.
fn value_end(text: &str, start: usize) -> usize {
    let b = text.as_bytes();
    let mut i = start;
    if b.get(i) == Some(&b'"') {
        i += 1;
        while i < b.len() {
            match b[i] {
                b'\\' => i += 2,
                b'"' => return i + 1,
                _ => i += 1,
            }
        }
        return b.len();
    }
    while i < b.len() {
        match b[i] {
            b'\\' if i + 1 < b.len() && matches!(b[i + 1], b'\r' | b'\n') => {
                // continuation inside an unquoted value
                i += 1;
                while i < b.len() && matches!(b[i], b'\r' | b'\n') {
                    i += 1;
                }
                while i < b.len() && matches!(b[i], b' ' | b'\t') {
                    i += 1;
                }
            }
            b'\\' => i += 2,
            c if c.is_ascii_whitespace() || matches!(c, b';' | b']' | b'}' | b')') => {
                return i;
            }
            _ => i += 1,
        }
    }
    b.len().min(i)
}

/// Masks the secret values of a change script (see the module docs).
pub fn mask_script(script: &str) -> MaskedScript {
    let mut out = String::with_capacity(script.len());
    let mut secrets: Vec<String> = Vec::new();
    let mut placeholders = Vec::new();
    let mut context: Vec<String> = Vec::new();
    let mut menu: Vec<String> = Vec::new();
    let mut line_start = true;
    let mut continued = false;
    let mut prev: Option<char> = None;
    let mut i = 0;
    while i < script.len() {
        let rest = &script[i..];
        if line_start {
            if !continued {
                let line = rest.split('\n').next().unwrap_or(rest);
                menu = line_menu(line, &mut context);
            }
            line_start = false;
        }
        let Some(c) = rest.chars().next() else { break };
        if key_start(prev) && key_char(c) {
            let klen = rest.find(|ch: char| !key_char(ch)).unwrap_or(rest.len());
            let key = &rest[..klen];
            if rest[klen..].starts_with('=') {
                let vstart = i + klen + 1;
                let vend = value_end(script, vstart).max(vstart).min(script.len());
                let raw = script.get(vstart..vend).unwrap_or("");
                let path = MenuPath::from_segments(menu.iter().map(String::as_str));
                let literal = !raw.starts_with('[') && !raw.starts_with('$');
                out.push_str(key);
                out.push('=');
                if literal && is_secret(&path, key) {
                    let value = decode(raw);
                    if value == MASK {
                        placeholders.push(key.to_owned());
                        out.push_str(raw);
                    } else if NON_SECRET_VALUES.contains(&value.as_str()) {
                        out.push_str(raw);
                    } else {
                        for s in [raw.to_owned(), value] {
                            if !s.is_empty() && !secrets.contains(&s) {
                                secrets.push(s);
                            }
                        }
                        out.push_str(MASK);
                    }
                } else {
                    out.push_str(raw);
                }
                // A value may span lines (quoted or continued): the command, so the menu,
                // goes on.
                prev = script[i..vend].chars().last();
                i = vend;
                continue;
            }
            out.push_str(key);
            prev = key.chars().last();
            i += klen;
            continue;
        }
        out.push(c);
        if c == '\n' {
            line_start = true;
            let before = out.trim_end_matches(['\r', '\n']);
            continued = before.ends_with('\\');
        }
        prev = Some(c);
        i += c.len_utf8();
    }
    MaskedScript {
        text: out,
        secrets,
        placeholders,
    }
}

/// Replaces every occurrence of each secret (longest first; secrets shorter than 3 bytes
/// are left, as replacing them would mangle the text and reveal little) with [`MASK`].
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut sorted: Vec<&String> = secrets.iter().filter(|s| s.len() >= 3).collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_owned();
    for s in sorted {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), MASK);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(s: &str) -> String {
        mask_script(s).text
    }

    #[test]
    fn masks_secret_keys_in_every_value_form() {
        let s = "/ppp secret\nadd name=u password=hunter2 service=l2tp\n\
                 /ip ipsec identity add peer=p secret=\"two words\" comment=x\n\
                 /interface wireless security-profiles set [ find default=yes ] \
                 wpa2-pre-shared-key=\"q\\\"uo\\\\te\" wpa-pre-shared-key=esc\\41ped\n\
                 /interface wifi set wifi1 security.passphrase=wifi-pass-1\n\
                 /ip ipsec identity add private-pre-shared-key=ppsk-1 generate-policy=port-strict\n\
                 /radius add shared-secret=rad1 address=10.0.0.1\n\
                 /routing ospf interface-template set 0 authentication-key=ospfkey\n\
                 /snmp community set [find default=yes] authentication-password=snmpauth \
                 encryption-password=snmpenc\n\
                 /snmp community\nadd name=community-secret addresses=10.0.0.0/8\n\
                 /x add psk=psk-1 auth-key=ak-1 eap-shared-secret=eap-1\n";
        let m = mask_script(s);
        for secret in [
            "hunter2",
            "two words",
            "uo",
            "esc",
            "wifi-pass-1",
            "ppsk-1",
            "rad1",
            "ospfkey",
            "snmpauth",
            "snmpenc",
            "community-secret",
            "psk-1",
            "ak-1",
            "eap-1",
        ] {
            assert!(!m.text.contains(secret), "{secret} in {}", m.text);
        }
        assert!(m.text.contains("add name=u password=MASKED service=l2tp\n"));
        assert!(m.text.contains("secret=MASKED comment=x\n"));
        assert!(m.text.contains("generate-policy=port-strict"));
        assert!(m.text.contains("address=10.0.0.1"));
        assert!(m.text.contains("addresses=10.0.0.0/8"));
        // decoded values are among the secrets, for redacting messages
        assert!(m.secrets.contains(&"q\"uo\\te".to_owned()));
        assert!(m.secrets.contains(&"escAped".to_owned()));
        assert!(m.placeholders.is_empty());
    }

    #[test]
    fn leaves_everything_else_byte_for_byte() {
        let s = "/ip address add address=10.0.0.1/24 interface=ether1 comment=\"a b\"\n\
                 /system identity set name=r1\n/user add name=x group=full password=\"\"\n\
                 /ppp secret set [ find name=u ] password=$pw\n:log info \"done\"\n";
        let m = mask_script(s);
        assert_eq!(m.text, s);
        assert!(!m.has_secrets());
        // the SNMP name rule needs the SNMP community menu
        assert_eq!(
            masked("/system identity set name=community-x\n"),
            "/system identity set name=community-x\n"
        );
    }

    #[test]
    fn quoted_values_across_continuation_lines() {
        let s = "/ppp secret add name=u password=\"part-one\\\n    part-two\" service=any\n/ip dns set servers=1.1.1.1\n";
        let m = mask_script(s);
        assert_eq!(
            m.text,
            "/ppp secret add name=u password=MASKED service=any\n/ip dns set servers=1.1.1.1\n"
        );
        assert!(m.secrets.contains(&"part-onepart-two".to_owned()));
    }

    #[test]
    fn placeholders_and_redaction() {
        let m = mask_script("/ppp secret add name=u password=MASKED\n");
        assert_eq!(m.placeholders, vec!["password".to_owned()]);
        let m = mask_script("/ppp secret add name=u password=s3cr3t-value\n");
        assert_eq!(
            redact("line 1: bad value s3cr3t-value near password", &m.secrets),
            "line 1: bad value MASKED near password"
        );
    }

    #[test]
    fn masking_is_stable() {
        let s = "/ppp secret add name=u password=\"a\\\"b\" secret=c\n";
        let once = masked(s);
        assert_eq!(masked(&once), once);
    }
}
