package dev.vlm4j.preprocess.tokenizer;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.Collections;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The token-string / id tables of a Hugging Face {@code tokenizer.json}: the model vocabulary ({@code model.vocab},
 * an object for BPE / WordPiece / WordLevel or an array of {@code [token, score]} pairs for Unigram) plus the
 * {@code added_tokens}. Strings are the raw vocabulary entries (byte-level BPE spells a leading space as
 * {@code "Ġ"}), the same strings {@code convert_tokens_to_ids} / {@code convert_ids_to_tokens} use.
 *
 * <p>The native library offers no such lookups, so they are read here with a streaming parse that skips the
 * (large) merges list. Immutable once built, hence safe to share between threads.
 */
final class Vocabulary {
    private final Map<String, Integer> tokenToId;
    private final String[] idToToken;
    private final List<Tokenizer.AddedToken> addedTokens;
    private final BitSet specialIds = new BitSet();

    private Vocabulary(Map<String, Integer> tokenToId, String[] idToToken, List<Tokenizer.AddedToken> addedTokens) {
        this.tokenToId = tokenToId;
        this.idToToken = idToToken;
        this.addedTokens = addedTokens;
        for (Tokenizer.AddedToken t : addedTokens) if (t.special()) specialIds.set(t.id());
    }

    /** The id of a vocabulary or added token, or -1 when there is none. */
    int id(String token) {
        Integer id = tokenToId.get(token);
        return id == null ? -1 : id;
    }

    /** The token string with this id, or {@code null} when the id is outside the vocabulary. */
    String token(int id) {
        return id >= 0 && id < idToToken.length ? idToToken[id] : null;
    }

    /** One more than the highest id in use (model vocabulary and added tokens). */
    int size() {
        return idToToken.length;
    }

    /** Whether the id is a special added token. */
    boolean isSpecial(int id) {
        return id >= 0 && specialIds.get(id);
    }

    /** The added tokens in id order. */
    List<Tokenizer.AddedToken> addedTokens() {
        return addedTokens;
    }

    /** Reads the tables from the bytes of a {@code tokenizer.json}. */
    static Vocabulary parse(byte[] json, ObjectMapper mapper) throws IOException {
        Map<String, Integer> tokenToId = new HashMap<>(1 << 18);
        List<Tokenizer.AddedToken> added = new ArrayList<>();
        try (JsonParser p = mapper.getFactory().createParser(json)) {
            expect(p.nextToken(), JsonToken.START_OBJECT, "the top level");
            while (p.nextToken() == JsonToken.FIELD_NAME) {
                String field = p.currentName();
                JsonToken value = p.nextToken();
                if ("added_tokens".equals(field) && value == JsonToken.START_ARRAY) {
                    for (JsonNode t : (JsonNode) mapper.readTree(p)) {
                        added.add(new Tokenizer.AddedToken(t.path("id").asInt(-1), t.path("content").asText(),
                                t.path("special").asBoolean(false)));
                    }
                } else if ("model".equals(field) && value == JsonToken.START_OBJECT) {
                    readModel(p, tokenToId);
                } else {
                    p.skipChildren();
                }
            }
        }
        if (tokenToId.isEmpty()) throw new IOException("no \"model.vocab\" entries found");
        for (Tokenizer.AddedToken t : added) {
            if (t.id() < 0 || t.content().isEmpty()) throw new IOException("malformed entry in \"added_tokens\": " + t);
            tokenToId.put(t.content(), t.id());
        }
        added.sort(Comparator.comparingInt(Tokenizer.AddedToken::id));
        int maxId = -1;
        for (int id : tokenToId.values()) maxId = Math.max(maxId, id);
        String[] idToToken = new String[maxId + 1];
        for (Map.Entry<String, Integer> e : tokenToId.entrySet()) idToToken[e.getValue()] = e.getKey();
        return new Vocabulary(tokenToId, idToToken, Collections.unmodifiableList(added));
    }

    private static void readModel(JsonParser p, Map<String, Integer> tokenToId) throws IOException {
        while (p.nextToken() == JsonToken.FIELD_NAME) {
            String field = p.currentName();
            JsonToken value = p.nextToken();
            if ("vocab".equals(field) && value == JsonToken.START_OBJECT) {
                while (p.nextToken() == JsonToken.FIELD_NAME) {
                    String token = p.currentName();
                    expect(p.nextToken(), JsonToken.VALUE_NUMBER_INT, "model.vocab[\"" + token + "\"]");
                    tokenToId.put(token, p.getIntValue());
                }
            } else if ("vocab".equals(field) && value == JsonToken.START_ARRAY) {
                int id = 0;
                while (p.nextToken() == JsonToken.START_ARRAY) {  // Unigram: [token, score]
                    expect(p.nextToken(), JsonToken.VALUE_STRING, "model.vocab[" + id + "]");
                    tokenToId.putIfAbsent(p.getText(), id++);
                    while (p.nextToken() != JsonToken.END_ARRAY) p.skipChildren();
                }
            } else {
                p.skipChildren();
            }
        }
    }

    private static void expect(JsonToken actual, JsonToken expected, String where) throws IOException {
        if (actual != expected) throw new IOException("expected " + expected + " at " + where + ", found " + actual);
    }
}
