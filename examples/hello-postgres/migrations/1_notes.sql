create table notes (id serial primary key, body text not null, created date not null default current_date);
insert into notes (body) values ('first note'), ('second note'), ('third note');
