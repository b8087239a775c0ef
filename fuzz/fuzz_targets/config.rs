//! Config loading never panics: any pair of files gives a configuration or errors that render.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The first NUL splits the base file from the environment file.
    let (base, env) = text.split_once('\0').unwrap_or((&text, "domain = \"a.test\"\nhosts = [\"h\"]\n"));
    match shipit::config::validate_for_tests(base, env) {
        Ok(config) => {
            let _ = toml::to_string(&config);
        }
        Err(errors) => {
            let _ = errors.to_string();
        }
    }
});
