import java.util.Map;

/**
 * The bean X-Road 7 binds conf.d/mail.yml to (common-mail MailNotificationProperties): same
 * property names and types (port is an Integer, use-ssl-tls a boolean), written from that list.
 */
public class MailShape {
    private String host;
    private Integer port;
    private String username;
    private String password;
    private boolean useSslTls;
    private Map<String, String> contacts;

    public String getHost() {
        return host;
    }

    public void setHost(String v) {
        host = v;
    }

    public Integer getPort() {
        return port;
    }

    public void setPort(Integer v) {
        port = v;
    }

    public String getUsername() {
        return username;
    }

    public void setUsername(String v) {
        username = v;
    }

    public String getPassword() {
        return password;
    }

    public void setPassword(String v) {
        password = v;
    }

    public boolean isUseSslTls() {
        return useSslTls;
    }

    public void setUseSslTls(boolean v) {
        useSslTls = v;
    }

    public Map<String, String> getContacts() {
        return contacts;
    }

    public void setContacts(Map<String, String> v) {
        contacts = v;
    }
}
