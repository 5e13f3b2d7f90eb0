"""MemoriRetriever: recall as Documents, in a RAG chain, per user; and LangChain's own
standard retriever tests (langchain-tests)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from langchain_tests.integration_tests import RetrieversIntegrationTests
from lc_helpers import SeenByModels
from memori_langchain import MemoriRetriever

from memori_core import ConfigurationError, Memori, StorageError


@pytest.fixture
def ana(smem: Memori) -> Memori:
    smem.attribution(entity_id="ana", process_id="guide")
    smem.remember("The user is allergic to peanuts")
    smem.remember("The user lives in Lisbon")
    with smem.attribution(entity_id="ana", process_id="other-app"):
        smem.remember("The user prefers peanuts-free trail mix")
    with smem.attribution(entity_id="bob"):
        smem.remember("The user loves peanuts")
    return smem


def test_documents_carry_the_memory_and_its_metadata(ana: Memori) -> None:
    docs = MemoriRetriever(memori=ana).invoke("allergic to peanuts")
    assert docs[0].page_content == "The user is allergic to peanuts"
    meta = docs[0].metadata
    assert docs[0].id == str(meta["id"]) and meta["kind"] == "fact"
    assert meta["process_id"] == "guide" and meta["mention_count"] == 1
    assert meta["source_message_ids"] == []
    assert 0 < meta["similarity"] <= 1 and isinstance(meta["score"], float)
    assert meta["created_at"].startswith("20")  # ISO 8601
    contents = [d.page_content for d in docs]
    assert "The user loves peanuts" not in contents  # bob's
    assert "The user prefers peanuts-free trail mix" not in contents  # another process


def test_k_scope_and_async(ana: Memori) -> None:
    assert len(MemoriRetriever(memori=ana, k=1).invoke("peanuts user")) == 1
    assert len(MemoriRetriever(memori=ana).invoke("peanuts user", k=1)) == 1
    wide = MemoriRetriever(memori=ana, scope="entity").invoke("peanuts user")
    assert "The user prefers peanuts-free trail mix" in [d.page_content for d in wide]
    docs = asyncio.run(MemoriRetriever(memori=ana).ainvoke("allergic to peanuts", k=1))
    assert [d.page_content for d in docs] == ["The user is allergic to peanuts"]


def test_source_message_ids_point_to_the_captured_turn(smem: Memori) -> None:
    smem.attribution(entity_id="ana")
    ids = smem.capture([{"role": "user", "content": "My dog is called Pastel"}])
    assert smem.augmentation.wait(timeout=30)
    docs = MemoriRetriever(memori=smem).invoke("what is my dog called?")
    assert any(d.metadata["source_message_ids"] == ids for d in docs)


def test_in_a_rag_chain_per_user(ana: Memori, seen: SeenByModels) -> None:
    ana.attribution()  # nobody set: the user comes from the run's config
    retriever = MemoriRetriever(memori=ana)
    prompt = ChatPromptTemplate.from_messages([
        ("system", "Known about the user:\n{context}"), ("human", "{question}")])

    def join(docs: list[Document]) -> str:
        return "\n".join(d.page_content for d in docs)

    chain = ({"context": retriever | join, "question": RunnablePassthrough()} | prompt
             | GenericFakeChatModel(messages=iter(["ok", "ok"])))
    configs: Any = [{"configurable": {"user_id": u}, "callbacks": [seen]} for u in ("ana", "bob")]
    chain.batch(["does the user eat peanuts?"] * 2, configs)
    ana_sys, bob_sys = sorted((r["messages"][0].text for r in seen.runs),
                              key=lambda s: "loves" in s)
    assert "allergic to peanuts" in ana_sys and "loves peanuts" not in ana_sys
    assert "loves peanuts" in bob_sys and "allergic" not in bob_sys


def test_bad_arguments_and_failures(ana: Memori) -> None:
    for kwargs, argument in (({"memori": "x"}, "memori"), ({"memori": ana, "k": 0}, "k"),
                             ({"memori": ana, "scope": "all"}, "scope")):
        with pytest.raises(ConfigurationError) as err:
            MemoriRetriever(**kwargs)
        assert err.value.argument == argument
    with pytest.raises(ConfigurationError) as err:
        MemoriRetriever(memori=ana).invoke("peanuts", k=-2)
    assert err.value.argument == "k"
    ana.attribution()
    with pytest.raises(ConfigurationError) as err:
        MemoriRetriever(memori=ana).invoke("peanuts")
    assert err.value.argument == "entity_id"
    ana.close()
    with pytest.raises(StorageError):  # a failed recall is an error, not "no documents"
        MemoriRetriever(memori=ana, entity_id="ana").invoke("peanuts")


@pytest.mark.anyio  # runs the suite's one async test (on asyncio: anyio_backend's default)
class TestMemoriRetrieverStandard(RetrieversIntegrationTests):
    """langchain-tests' retriever suite, on a real SQLite memori with three memories."""

    @pytest.fixture(autouse=True)
    def _memori(self, smem: Memori) -> None:
        smem.attribution(entity_id="standard-user")
        for text in ("The user hikes in Sintra", "The user hikes with a dog",
                     "The user hikes at dawn"):
            smem.remember(text)
        self.mem = smem

    @property
    def retriever_constructor(self) -> type[MemoriRetriever]:
        return MemoriRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"memori": self.mem}

    @property
    def retriever_query_example(self) -> str:
        return "where and when does the user hike?"
