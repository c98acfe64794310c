import java.io.IOException;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.commons.configuration2.INIConfiguration;
import org.apache.commons.configuration2.SubnodeConfiguration;
import org.apache.commons.configuration2.convert.DefaultListDelimiterHandler;
import org.apache.commons.configuration2.convert.DisabledListDelimiterHandler;
import org.apache.commons.configuration2.ex.ConfigurationException;
import org.apache.commons.configuration2.ex.ConfigurationRuntimeException;

/**
 * The two ways X-Road 7 reads INI files with commons-configuration2, set up the same way.
 *
 * <p>{@code ini}: SystemPropertiesLoader#load (common-core): a fresh INIConfiguration with the
 * DisabledListDelimiterHandler, read from Files.newBufferedReader (UTF-8, malformed input
 * throws), then every section of getSections() (the global section is the null name), every
 * key of getSection(name).getKeys() and its getString(key), which becomes the system property
 * "xroad." + section + "." + key. ConfigurationException and IOException are logged as a
 * warning and the file contributes nothing; anything else escapes load() and stops the service.
 *
 * <p>{@code devices}: the signer's ModuleConf#reload (signer-core): a DefaultListDelimiterHandler
 * on ',', UTF-8 reader; a failure to read is logged and leaves only the softToken module; a blank
 * section name (the global section) is logged and skipped; boolean parameters that do not convert
 * make the section be logged and skipped.
 */
final class IniModes {
    private IniModes() {
    }

    /** The boolean parameters ModuleConf reads with getBoolean for a hardware module section. */
    private static final String[] DEVICE_BOOLEANS = {
        "enabled", "library_cant_create_os_threads", "os_locking_ok", "sign_verify_pin",
        "batch_signing_enabled", "read_only", "pub_key_attribute_encrypt",
        "pub_key_attribute_verify", "pub_key_attribute_verify_recover", "pub_key_attribute_wrap",
        "pub_key_attribute_trusted", "priv_key_attribute_sensitive", "priv_key_attribute_decrypt",
        "priv_key_attribute_sign", "priv_key_attribute_sign_recover", "priv_key_attribute_unwrap",
        "priv_key_attribute_extractable", "priv_key_attribute_always_sensitive",
        "priv_key_attribute_never_extractable", "priv_key_attribute_wrap_with_trusted",
    };

    static String systemProperties(Path path) {
        INIConfiguration ini = new INIConfiguration();
        ini.setListDelimiterHandler(DisabledListDelimiterHandler.INSTANCE);
        List<Object> entries = new ArrayList<>();
        List<Object> properties = new ArrayList<>();
        Properties systemProperties = new Properties();
        try (Reader r = Files.newBufferedReader(path)) {
            ini.read(r);
            for (String section : ini.getSections()) {
                SubnodeConfiguration sec = ini.getSection(section);
                for (Iterator<String> keys = sec.getKeys(); keys.hasNext();) {
                    String key = keys.next();
                    String value = sec.getString(key);
                    entries.add(triple(section, key, value));
                    String name = "xroad." + section + "." + key;
                    // SystemPropertiesLoader#setProperty: System.setProperty, which throws on a
                    // null value (an INI key getString answers null for)
                    systemProperties.setProperty(name, value);
                    properties.add(List.of(name, value));
                }
            }
        } catch (ConfigurationException | IOException e) {
            return Oracle.failure(e, "file-skipped");
        } catch (RuntimeException e) {
            return Oracle.failure(e, "service-fails");
        }
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("ok", true);
        out.put("sections", new ArrayList<>(ini.getSections()));
        out.put("entries", entries);
        out.put("properties", properties);
        return Json.value(out);
    }

    static String devices(Path path) {
        INIConfiguration conf = new INIConfiguration();
        conf.setListDelimiterHandler(new DefaultListDelimiterHandler(','));
        List<Object> entries = new ArrayList<>();
        List<Object> lists = new ArrayList<>();
        List<Object> logged = new ArrayList<>();
        try {
            try (Reader r = Files.newBufferedReader(path, StandardCharsets.UTF_8)) {
                conf.read(r);
            }
            for (String uid : conf.getSections()) {
                SubnodeConfiguration sec = conf.getSection(uid);
                for (Iterator<String> keys = sec.getKeys(); keys.hasNext();) {
                    String key = keys.next();
                    entries.add(triple(uid, key, sec.getString(key)));
                    lists.add(triple(uid, key, List.of(sec.getStringArray(key))));
                }
                if (uid == null || uid.isBlank()) {
                    logged.add("No UID specified for module, skipping...");
                    continue;
                }
                String[] params = "softToken".equalsIgnoreCase(uid)
                        ? new String[] {"enabled"} : DEVICE_BOOLEANS;
                for (String param : params) {
                    try {
                        sec.getBoolean(param, null);
                    } catch (ConfigurationRuntimeException e) {
                        logged.add("Invalid value of '" + param + "' for module (" + uid
                                + "), skipping...");
                        break;
                    }
                }
            }
        } catch (ConfigurationException | IOException | RuntimeException e) {
            return Oracle.failure(e, "modules-cleared");
        }
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("ok", true);
        out.put("sections", new ArrayList<>(conf.getSections()));
        out.put("entries", entries);
        out.put("lists", lists);
        out.put("logged", logged);
        return Json.value(out);
    }

    private static List<Object> triple(String section, String key, Object value) {
        List<Object> t = new ArrayList<>(3);
        t.add(section);
        t.add(key);
        t.add(value);
        return t;
    }
}
