//! The built-in marketplace sandbox's documented credentials. A store whose `gateway` is
//! `"sandbox"` talks to an in-process sandbox and may leave its secrets out of the config.

pub const TOP_APP_KEY: &str = "12345678";
pub const TOP_APP_SECRET: &str = "sandbox-top-secret-0123456789abcdef";
pub const TOP_SESSION: &str = "sandbox-top-session";
pub const JOS_APP_KEY: &str = "sandbox-jd-app-key";
pub const JOS_APP_SECRET: &str = "sandbox-jd-secret-0123456789";
pub const JOS_ACCESS_TOKEN: &str = "sandbox-jd-access-token";
