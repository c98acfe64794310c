import java.util.Map;

/**
 * The bean X-Road 7 binds conf.d/acme.yml to (common-acme AcmeProperties): the same property
 * names and types, so SnakeYAML accepts and rejects the same documents. Written from the
 * property list, not copied.
 */
public class AcmeShape {
    private Eab eabCredentials;
    private Map<String, String> contacts;
    private String accountKeystorePassword;

    public Eab getEabCredentials() {
        return eabCredentials;
    }

    public void setEabCredentials(Eab v) {
        eabCredentials = v;
    }

    public Map<String, String> getContacts() {
        return contacts;
    }

    public void setContacts(Map<String, String> v) {
        contacts = v;
    }

    public String getAccountKeystorePassword() {
        return accountKeystorePassword;
    }

    public void setAccountKeystorePassword(String v) {
        accountKeystorePassword = v;
    }

    /** eab-credentials: certificate authorities by name. */
    public static class Eab {
        private Map<String, Ca> certificateAuthorities;

        public Map<String, Ca> getCertificateAuthorities() {
            return certificateAuthorities;
        }

        public void setCertificateAuthorities(Map<String, Ca> v) {
            certificateAuthorities = v;
        }
    }

    /** One CA: whether MAC keys are base64, and credentials by member id. */
    public static class Ca {
        private boolean macKeyBase64Encoded;
        private Map<String, Credentials> members;

        public boolean isMacKeyBase64Encoded() {
            return macKeyBase64Encoded;
        }

        public void setMacKeyBase64Encoded(boolean v) {
            macKeyBase64Encoded = v;
        }

        public Map<String, Credentials> getMembers() {
            return members;
        }

        public void setMembers(Map<String, Credentials> v) {
            members = v;
        }
    }

    /** A member's external account binding: one kid/MAC pair or an auth- and a sign- pair. */
    public static class Credentials {
        private String kid;
        private String macKey;
        private String authKid;
        private String authMacKey;
        private String signKid;
        private String signMacKey;

        public String getKid() {
            return kid;
        }

        public void setKid(String v) {
            kid = v;
        }

        public String getMacKey() {
            return macKey;
        }

        public void setMacKey(String v) {
            macKey = v;
        }

        public String getAuthKid() {
            return authKid;
        }

        public void setAuthKid(String v) {
            authKid = v;
        }

        public String getAuthMacKey() {
            return authMacKey;
        }

        public void setAuthMacKey(String v) {
            authMacKey = v;
        }

        public String getSignKid() {
            return signKid;
        }

        public void setSignKid(String v) {
            signKid = v;
        }

        public String getSignMacKey() {
            return signMacKey;
        }

        public void setSignMacKey(String v) {
            signMacKey = v;
        }
    }
}
