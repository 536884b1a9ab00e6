//! The accounts a login service lets in, from the persona keys the original
//! DECNET used: `users` (`user:password,…`), `password` (root's) and `user` +
//! `user_password` (one more account).

use decnet_core::persona::{PersonaConfig, PersonaValue};

/// Who may log in, with which password.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounts(Vec<(String, String)>);

impl Accounts {
    pub fn from_persona(persona: &PersonaConfig) -> Self {
        let mut accounts = Vec::new();
        if let Some(PersonaValue::Credentials(users)) = persona.get("users") {
            accounts.extend(users.iter().map(|c| (c.username.clone(), c.password.clone())));
        }
        let text = |key: &str| persona.get(key).and_then(PersonaValue::as_str).map(String::from);
        if let Some(password) = text("password") {
            accounts.push(("root".into(), password));
        }
        if let (Some(user), Some(password)) = (text("user"), text("user_password")) {
            accounts.push((user, password));
        }
        Self(accounts)
    }

    /// Whether `user` logs in with `password` (any of its passwords).
    pub fn check(&self, user: &str, password: &[u8]) -> bool {
        self.0.iter().any(|(u, p)| u == user && p.as_bytes() == password)
    }

    /// The first password of `user`.
    pub fn password_of(&self, user: &str) -> Option<&str> {
        self.0.iter().find(|(u, _)| u == user).map(|(_, p)| p.as_str())
    }

    /// The account names, each once, in persona order.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for (user, _) in &self.0 {
            if !names.contains(&user.as_str()) {
                names.push(user);
            }
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use decnet_core::persona::Credential;

    use super::*;

    #[test]
    fn every_key_adds_its_account() {
        let mut persona = PersonaConfig::new();
        persona.insert(
            "users".into(),
            PersonaValue::Credentials(vec![Credential {
                username: "admin".into(),
                password: "admin123".into(),
            }]),
        );
        persona.insert("password".into(), PersonaValue::String("toor".into()));
        persona.insert("user".into(), PersonaValue::String("svc".into()));
        persona.insert("user_password".into(), PersonaValue::String("backup2024".into()));
        let accounts = Accounts::from_persona(&persona);
        assert!(accounts.check("admin", b"admin123"));
        assert!(accounts.check("root", b"toor"));
        assert!(accounts.check("svc", b"backup2024"));
        assert!(!accounts.check("root", b"admin123"));
        assert!(!accounts.check("admin", b"admin1234"));
        assert_eq!(accounts.names(), ["admin", "root", "svc"]);
    }

    #[test]
    fn a_user_without_password_adds_nothing() {
        let mut persona = PersonaConfig::new();
        persona.insert("user".into(), PersonaValue::String("svc".into()));
        assert_eq!(Accounts::from_persona(&persona), Accounts::default());
    }
}
