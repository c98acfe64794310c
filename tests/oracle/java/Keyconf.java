import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import javax.xml.bind.JAXBContext;
import javax.xml.bind.JAXBElement;
import javax.xml.bind.UnmarshalException;
import javax.xml.bind.annotation.XmlAccessType;
import javax.xml.bind.annotation.XmlAccessorType;
import javax.xml.bind.annotation.XmlElement;
import javax.xml.bind.annotation.XmlElementDecl;
import javax.xml.bind.annotation.XmlRegistry;
import javax.xml.bind.annotation.XmlType;
import javax.xml.namespace.QName;

/**
 * signer/keyconf.xml as X-Road 7's signer loads it: TokenConf hands AbstractXmlConf no schema
 * validator, so the file goes straight to {@code JAXBContext.createUnmarshaller().unmarshal(in)}
 * with no event handler, and the result is cast to {@code JAXBElement<KeyConfType>}.
 *
 * The classes below are ours, written to bind the elements keyconf.xsd declares for the path
 * from the root to a key's id (the xjc-generated ones in X-Road carry more fields; the typed
 * ones, such as pinIndex or the usage adapter, are not mirrored). What is real is JAXB's own
 * binding: which root it accepts, which elements it ignores, what text a string gets.
 * Output ({@code data}): the keyIds of keys in devices whose deviceType is exactly "softToken"
 * (the signer then opens signer/softtoken/KEYID.p12), in document order, null where a key has
 * none.
 */
final class Keyconf {
    static final String NS = "http://x-road.eu/xsd/xroad.xsd";
    private static final JAXBContext CONTEXT = context();

    private Keyconf() {
    }

    private static JAXBContext context() {
        try {
            return JAXBContext.newInstance(ObjectFactory.class);
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    @XmlAccessorType(XmlAccessType.FIELD)
    @XmlType(name = "KeyConfType")
    public static final class KeyConfType {
        @XmlElement(name = "device")
        List<DeviceType> device = new ArrayList<>();
    }

    @XmlAccessorType(XmlAccessType.FIELD)
    @XmlType(name = "DeviceType")
    public static final class DeviceType {
        @XmlElement(required = true)
        String deviceType;
        String friendlyName;
        @XmlElement(required = true)
        String id;
        @XmlElement(name = "key")
        List<KeyType> key = new ArrayList<>();
    }

    @XmlAccessorType(XmlAccessType.FIELD)
    @XmlType(name = "KeyType")
    public static final class KeyType {
        @XmlElement(required = true)
        String friendlyName;
        String label;
        String keyId;
    }

    @XmlRegistry
    public static final class ObjectFactory {
        @XmlElementDecl(namespace = NS, name = "keyConf")
        public JAXBElement<KeyConfType> createKeyConf(KeyConfType value) {
            return new JAXBElement<>(new QName(NS, "keyConf"), KeyConfType.class, null, value);
        }
    }

    static String read(Path path) throws Exception {
        Object root;
        try (InputStream in = Files.newInputStream(path)) {
            root = CONTEXT.createUnmarshaller().unmarshal(in);
        } catch (UnmarshalException e) {
            return Oracle.failure(e.getLinkedException() != null ? e.getLinkedException() : e,
                    "signer-fails");
        }
        if (!(root instanceof JAXBElement<?> element)
                || !(element.getValue() instanceof KeyConfType conf)) {
            return Oracle.failure(new ClassCastException(String.valueOf(root)), "signer-fails");
        }
        List<Object> ids = new ArrayList<>();
        for (DeviceType device : conf.device) {
            if ("softToken".equals(device.deviceType)) {
                for (KeyType key : device.key) {
                    ids.add(key.keyId);
                }
            }
        }
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("ok", true);
        out.put("data", ids);
        return Json.value(out);
    }
}
