//! Text → the configuration reader, as TOML, as a JSON dictConfig and as a
//! YAML one (PyYAML's scalars, anchors, merges, cfg:// references). Every
//! input must end in a configuration or a list of problems: no panic, no
//! stack overflow, no memory beyond the limits (nested aliases are bounded).
#![no_main]

use libfuzzer_sys::fuzz_target;
use logfunnel_hub::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Config::from_yaml_str(text, "fuzz.yaml");
    let _ = Config::from_json_str(text, "fuzz.json");
    let _ = Config::from_toml_str(text, "fuzz.toml");
});
