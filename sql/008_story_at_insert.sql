-- An article is inserted already in the story it starts (story_id = its own id), and
-- its story row follows later in the same transaction: the foreign key is checked at
-- commit. Before, every new article was inserted, then updated with its story, which
-- wrote each row and all six of its index entries (the full-text one too) twice.
ALTER TABLE articles ALTER CONSTRAINT articles_story_id_fkey DEFERRABLE INITIALLY DEFERRED;
